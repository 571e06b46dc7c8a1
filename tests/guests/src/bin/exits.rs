//! Exit paths, chosen by argv[1]: `exit-in-thread N`, `panic-main`, `return`,
//! `trap-main`, `kill-main`.
use std::time::Duration;

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    match mode.as_str() {
        "exit-in-thread" => {
            let code: i32 = std::env::args().nth(2).unwrap().parse().unwrap();
            wasmlet::spawn(move || std::process::exit(code));
            let _ = wasmlet::sleep(Duration::from_secs(3600));
        }
        "panic-main" => panic!("main gave up"),
        "trap-main" => {
            let zero = std::hint::black_box(0);
            println!("{}", 1 / zero);
        }
        "kill-main" => {
            let main = wasmlet::getcurrent();
            wasmlet::spawn(move || main.kill());
            let _ = wasmlet::sleep(Duration::from_secs(3600));
        }
        _ => println!("returning normally"),
    }
}
