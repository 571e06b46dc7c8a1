"""The network benchmark: wasmlet's echo server (examples/echo) side by side
with eventlet's (eventlet.listen + spawn_n per connection), gevent's
StreamServer and a native tokio server on one thread (the limit), all driven
by the same native client (bench/net/client.rs), on loopback, bounded in
count and time. Prints a table and writes bench/results/net.json.

Usage: python bench/net/run.py [--quick] [--systems a,b,...]
(bench/run sets up everything and calls this.)
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from loopback import free_addr, start_server  # noqa: E402
WASMLET = ROOT / "target/release/wasmlet"
ECHO = ROOT / "examples/target/wasm32-wasip1-threads/release/echo-server.wasm"
CLIENT = ROOT / "target/release/examples/net-bench-client"
TOKIO = ROOT / "target/release/examples/net-bench-tokio"
PYTHON = str(ROOT / "bench/.venv/bin/python") if (ROOT / "bench/.venv/bin/python").exists() else sys.executable
# "compact" is wasmlet's echo server in the compact execution model.
SYSTEMS = ["wasmlet", "compact", "eventlet", "gevent", "tokio"]

# (metric, unit, what, higher is better)
METRICS = [
    ("rps_100", "round trips/s", "100 connections: round trips per second", True),
    ("p50_100", "ms", "100 connections: round trip p50", False),
    ("p99_100", "ms", "100 connections: round trip p99", False),
    ("rps_10k", "round trips/s", "10,000 connections: round trips per second", True),
    ("p50_10k", "ms", "10,000 connections: round trip p50", False),
    ("p99_10k", "ms", "10,000 connections: round trip p99", False),
    ("setup", "connections/s", "connection set-up (connect, one round trip, close)", True),
    ("idle_rss", "B", "resident memory per idle connection", False),
]


def start(system, addr):
    if system in ("wasmlet", "compact"):
        # The defaults hold 10,000 connections (no flag needed).
        model = "fibers" if system == "wasmlet" else "compact"
        cmd = [str(WASMLET), "run", "--threads", model, "--listen", addr, str(ECHO), "--", addr]
    elif system == "tokio":
        cmd = [str(TOKIO), addr]
    else:
        cmd = [PYTHON, "-W", "ignore", str(ROOT / "bench/net/servers.py"), system, addr]
    return start_server(system, cmd, addr)


def client(addr, *args):
    out = subprocess.run([str(CLIENT), addr, *map(str, args)], capture_output=True, text=True,
                         timeout=300)
    if out.returncode != 0:
        raise SystemExit(f"client {args} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(system, quick):
    big, seconds, setups, idles = (500, 1, 500, 500) if quick else (10_000, 3, 5_000, 5_000)
    figures = {}
    addr = free_addr()
    proc = start(system, addr)
    try:
        r = client(addr, "rr", 100, seconds)
        figures.update(rps_100=r["round_trips_per_s"], p50_100=r["p50_ms"], p99_100=r["p99_ms"])
        r = client(addr, "rr", big, seconds)
        figures.update(rps_10k=r["round_trips_per_s"], p50_10k=r["p50_ms"], p99_10k=r["p99_ms"])
        figures["setup"] = client(addr, "setup", setups)["connections_per_s"]
    finally:
        proc.kill()
        proc.wait()
    # Memory on a fresh server: nothing left over from the load above.
    addr = free_addr()
    proc = start(system, addr)
    try:
        time.sleep(0.3)
        figures["idle_rss"] = client(addr, "idle", idles, proc.pid)["rss_per_idle_connection_bytes"]
    finally:
        proc.kill()
        proc.wait()
    return figures


def fmt(v):
    if v is None:
        return "-"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3f}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    args = parser.parse_args()
    systems = args.systems.split(",")
    results = {}
    for system in systems:
        print(f"measuring {system} ...", file=sys.stderr, flush=True)
        results[system] = measure(system, args.quick)
    header = ["figure", "unit", *systems]
    if "gevent" in systems:
        header.append("wasmlet vs gevent")
    if "tokio" in systems:
        header.append("wasmlet vs tokio")
    rows = []
    for metric, unit, what, higher in METRICS:
        row = [what, unit, *(fmt(results[s].get(metric)) for s in systems)]
        ours = results.get("wasmlet", {}).get(metric)
        for other in ("gevent", "tokio"):
            if other in systems:
                theirs = results[other].get(metric)
                if ours and theirs:
                    better = ours / theirs if higher else theirs / ours
                    row.append(f"{better:.2f}x" + (" better" if better >= 1 else ""))
                else:
                    row.append("-")
        rows.append(row)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, ["-" * w for w in widths], *rows]:
        print(" | ".join(str(c).ljust(w) for c, w in zip(r, widths)))
    out = ROOT / "bench/results/net.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"quick": args.quick, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
