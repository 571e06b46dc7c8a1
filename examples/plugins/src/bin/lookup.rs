//! A plugin that calls back into its host: `price` asks the host's async
//! `app::lookup` (a 5 ms database query, say) for each id in its input.
//! While one call waits, the plugin's other calls run.
#[link(wasm_import_module = "app")]
extern "C" {
    /// The price of item `id`, in cents (the host answers asynchronously).
    fn lookup(id: i64) -> i64;
}

fn price(input: &[u8]) -> Result<String, String> {
    let id: i64 = std::str::from_utf8(input)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or("expected an item id")?;
    // SAFETY: a host import with plain integer arguments.
    let cents = unsafe { lookup(id) };
    Ok(format!("item {id}: {}.{:02}", cents / 100, cents % 100))
}

wasmlet::export!(price);

fn main() {}
