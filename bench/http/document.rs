/// The HTTP benchmark's document: 40 records, about 4 KB as JSON. One
/// source for the wasmlet guest (bench/guest/src/http_bench.rs) and the
/// hyper server (bench/http/hyper_server.rs), both of which `include!` it;
/// bench/http/servers.py builds the same records.
fn document() -> serde_json::Value {
    serde_json::Value::Array(
        (0..40)
            .map(|i| {
                serde_json::json!({
                    "id": i,
                    "name": format!("user {i}"),
                    "email": format!("user{i}@example.com"),
                    "active": i % 2 == 0,
                    "score": f64::from(i) * 1.5,
                    "tags": ["green", "thread"],
                })
            })
            .collect(),
    )
}
