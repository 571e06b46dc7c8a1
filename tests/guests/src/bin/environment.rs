//! Prints its args, one env var, and a file read through a preopened dir.
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    println!("args: {args:?}");
    println!("GREETING={}", std::env::var("GREETING").unwrap_or_default());
    match std::fs::read_to_string("/data/input.txt") {
        Ok(s) => println!("file: {}", s.trim()),
        Err(e) => println!("file error: {e}"),
    }
    // A green thread uses the same descriptors as main.
    let gt = wasmlet::spawn(|| {
        std::fs::write("/data/from-thread.txt", "written by a green thread").is_ok()
    });
    println!("green thread wrote: {:?}", gt.wait());
    let mut input = String::new();
    let read = std::io::Read::read_to_string(&mut std::io::stdin(), &mut input);
    println!("stdin: {:?}", read.map(|_| input.trim().to_string()));
}
