//! The plugin of the plugin benchmark (`bench/plugins/main.rs`): `echo`
//! returns its input (a trivial call); `wait` waits 1 ms in the host's async
//! `bench::sleep_ms` first.
#[link(wasm_import_module = "bench")]
extern "C" {
    fn sleep_ms(ms: i32) -> i32;
}

fn echo(input: &[u8]) -> Vec<u8> {
    input.to_vec()
}

fn wait(input: &[u8]) -> Vec<u8> {
    // SAFETY: a host import with an integer argument.
    unsafe { sleep_ms(1) };
    input.to_vec()
}

wasmlet::export!(echo, wait);

fn main() {}
