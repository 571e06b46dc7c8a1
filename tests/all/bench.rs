//! The benchmark suite still works end to end: `bench/run --quick` builds the
//! benchmark guest, runs every workload and writes the table as JSON. Small
//! counts, one repetition: this checks that figures come out, never how fast
//! they are.
//!
//! The default test run works offline: it measures wasmlet alone
//! (`--wasmlet-only`). eventlet and gevent (installed from PyPI into
//! bench/.venv) are run too where that venv exists already, or when
//! `WASMLET_BENCH_PEERS=1` asks for them.

use std::process::Command;

/// wasmlet's two execution models first (fibers, its default, and
/// compact), then the peers.
const SYSTEMS: [&str; 4] = ["wasmlet", "compact", "eventlet", "gevent"];
const METRICS: [&str; 11] = [
    "spawn_us",
    "switch_ns",
    "start_ms",
    "rss_per_thread_bytes",
    "kill_us",
    "late_p50_ms",
    "late_p99_ms",
    "fanout_us",
    "spawnall_us",
    "spawnall_peak_mib",
    "switchmany_ns",
];

#[test]
#[ignore = "heavy: `.ci/run` (the README's test command) runs it"]
fn quick_benchmark_run_reports_every_figure_for_every_system_measured() {
    let root = crate::support::repo_root();
    let out_file = std::env::temp_dir().join(format!("wasmlet-bench-{}.json", std::process::id()));
    let peers = std::env::var("WASMLET_BENCH_PEERS").is_ok_and(|v| v == "1")
        || root.join("bench/.venv/bin/python").exists();
    let systems: &[&str] = if peers { &SYSTEMS } else { &SYSTEMS[..2] };
    let mut command = Command::new(root.join("bench/run"));
    command.args(["--quick", "--out"]).arg(&out_file);
    if !peers {
        command.arg("--wasmlet-only");
    }
    let out = command.output().expect("running bench/run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench/run --quick failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for header in [
        "wasmlet/eventlet",
        "wasmlet/gevent",
        "compact/wasmlet",
        "machine: ",
        "Resident memory per sleeping green thread (1,000 asleep, bytes):",
        "host heap and rest",
        "benchmark, compact",
        "realistic, compact",
        "plugin calls, 1000 in flight",
        "wait 1 ms  wasmlet, 2 hubs",
        "trivial    wasmtime, instance per call (Spin)",
        "trivial    wasmlet, 1 hub, compact",
        "serving: 100 calls in flight",
        "wait 1 ms  HTTP, loopback, keep-alive",
        "100 connections: round trips per second",
        "resident memory per idle connection",
        "wasmlet vs tokio",
        "4 KB JSON, 10,000 connections",
        "TLS: hello, 100 connections",
        "wasmlet vs hyper",
    ] {
        assert!(stdout.contains(header), "{stdout}");
    }
    // Every HTTP case was served by wasmlet, in both models, TLS included.
    let http: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("bench/results/http.json")).expect("http.json"),
    )
    .unwrap();
    for model in ["wasmlet", "compact"] {
        for (case, figures) in http["results"][model].as_object().expect("cases") {
            assert!(
                figures["requests_per_s"].as_f64().unwrap_or(0.0) > 0.0,
                "{model} {case}: {figures}"
            );
        }
    }
    let text = std::fs::read_to_string(&out_file).expect("the JSON was written");
    std::fs::remove_file(&out_file).ok();
    let json: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(json["quick"], true);
    assert!(
        json["machine"]["cores"].as_u64().unwrap_or(0) >= 1,
        "{text}"
    );
    let figures = json["figures"].as_array().expect("figures");
    for metric in METRICS {
        let row = figures
            .iter()
            .find(|row| row["metric"] == metric)
            .unwrap_or_else(|| panic!("no row for {metric}: {text}"));
        for system in systems {
            let value = row[system].as_f64();
            assert!(
                value.is_some_and(|v| v.is_finite() && v >= 0.0),
                "{system} has no {metric}: {row}"
            );
        }
        for ratio in ["wasmlet_over_eventlet", "wasmlet_over_gevent"] {
            // A ratio is missing only where the other system measured 0
            // (e.g. no timer lateness at all).
            assert!(row[ratio].is_number() || row[ratio].is_null(), "{row}");
        }
    }
    // `bench/run --out FILE` elsewhere leaves bench/results/ unmade on a
    // fresh clone, where the memory step writes: it makes its own folder.
    let fresh = std::env::temp_dir().join(format!("wasmlet-bench-{}", std::process::id()));
    let memory_json = fresh.join("results").join("memory.json");
    let out = Command::new("python3")
        .arg(root.join("bench/memory.py"))
        .args(["--quick", "--out"])
        .arg(&memory_json)
        .output()
        .expect("running bench/memory.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = std::fs::read_to_string(&memory_json).expect("memory.json was written");
    std::fs::remove_dir_all(&fresh).ok();
    assert!(written.contains("\"count\": 1000"), "{written}");
    assert!(written.contains("benchmark_guest_compact"), "{written}");
}
