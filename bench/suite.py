"""Runs each workload on wasmlet, eventlet and gevent, several times each,
and prints the median figures side by side with the ratio wasmlet / other,
then writes them as JSON. Started by `bench/run`, which sets things up.

The workloads are the same program twice: `bench/guest/src/main.rs` (a
wasmlet guest) and `bench/greenbench.py` (eventlet or gevent). Each run is a
fresh process and prints one JSON object of figures.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WASMLET = ROOT / "target/release/wasmlet"
GUEST = ROOT / "bench/guest/target/wasm32-wasip1-threads/release/greenbench.wasm"
PYTHON = sys.executable
# "compact" is wasmlet with every guest in the compact execution model
# (`--threads compact`); "wasmlet" is its default (fibers).
SYSTEMS = ["wasmlet", "compact", "eventlet", "gevent"]

# (workload, full count, quick count, extra wasmlet flags, what the count is)
WORKLOADS = [
    ("spawn", 100_000, 2_000, [], "green threads spawned, run and waited for, in waves of 1,000"),
    ("switch", 200_000, 2_000, [], "sleep(0) rounds of each of two green threads"),
    (
        "concurrent",
        100_000,
        1_000,
        ["--dir", "/proc::/proc"],
        "green threads asleep at once",
    ),
    ("timers", 10_000, 500, ["--max-green-threads", "20000"], "sleepers of 1-10 ms"),
    ("fanout", 100_000, 2_000, [], "items through 100 workers over a bounded queue"),
    (
        "spawnall",
        100_000,
        2_000,
        ["--dir", "/proc::/proc"],
        "green threads spawned in one loop, then each waited for (default settings)",
    ),
    ("switchmany", 10_000, 500, [], "green threads each yielding 20 times (default settings)"),
]

# Pause after each run of the memory-heavy workload (full mode only).
SETTLE_SECONDS = 3

# (metric, unit, what it is); lower is better for every one.
METRICS = [
    ("spawn_us", "µs", "spawn + run + wait, per green thread"),
    ("switch_ns", "ns", "switch (sleep(0) ping-pong)"),
    ("start_ms", "ms", "start the concurrent sleepers, all"),
    ("rss_per_thread_bytes", "B", "resident memory per sleeping green thread"),
    ("kill_us", "µs", "kill a sleeping green thread"),
    ("late_p50_ms", "ms", "timer lateness p50"),
    ("late_p99_ms", "ms", "timer lateness p99"),
    ("fanout_us", "µs", "fan-out/fan-in per item (Queue, 100 workers)"),
    ("spawnall_us", "µs", "spawn 100,000 at once, then wait for each, per thread"),
    ("spawnall_peak_mib", "MiB", "peak resident memory, 100,000 spawned at once"),
    ("switchmany_ns", "ns", "switch among 10,000 green threads"),
]


def command(system, workload, count, flags):
    if system in ("wasmlet", "compact"):
        model = ["--threads", "fibers" if system == "wasmlet" else "compact"]
        return [str(WASMLET), "run", *model, *flags, str(GUEST), "--", workload, str(count)]
    script = str(ROOT / "bench/greenbench.py")
    return [PYTHON, "-W", "ignore", script, system, workload, str(count)]


def run_once(system, workload, count, flags):
    cmd = command(system, workload, count, flags)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise SystemExit(
            f"{system} {workload} failed (exit {out.returncode}):\n"
            f"  {' '.join(cmd)}\n{out.stderr[-2000:]}"
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


def machine():
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    mem_kib = int(next(l for l in meminfo if l.startswith("MemTotal:")).split()[1])
    model = next(
        (l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
         if l.startswith("model name")),
        platform.processor(),
    )
    rev = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "eventlet": installed("eventlet"),
        "gevent": installed("gevent"),
        "wasmtime": "48.0.8",
        "wasmlet_commit": rev,
    }


def installed(package):
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def fmt(value):
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if value >= 0.01 else f"{value:.4f}"


def ratio(ours, theirs):
    if ours is None or theirs is None or theirs == 0:
        return None
    return ours / theirs


def fmt_ratio(r):
    if r is None:
        return "-"
    better = f"{1 / r:,.1f}x better" if r < 1 else f"{r:,.1f}x worse"
    return f"{r:.3g} ({better})"


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts, one repetition")
    parser.add_argument("--reps", type=int, help="repetitions per figure (default 5; 1 with --quick)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/latest.json")
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help="comma-separated systems to run (default: all four)")
    args = parser.parse_args()
    reps = args.reps or (1 if args.quick else 5)
    systems = [s for s in args.systems.split(",") if s]
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown or not systems:
        raise SystemExit(f"unknown systems {unknown}; choose from {SYSTEMS}")

    runs = {s: {} for s in SYSTEMS}
    for workload, full, quick, flags, what in WORKLOADS:
        count = quick if args.quick else full
        for system in systems:
            for rep in range(reps):
                print(f"  {system:8} {workload:10} {count:>7,} {what} ({rep + 1}/{reps})",
                      file=sys.stderr, flush=True)
                figures = run_once(system, workload, count, flags)
                if workload in ("concurrent", "spawnall") and not args.quick:
                    # The run just freed gigabytes; let the kernel finish
                    # reclaiming them before the next run is timed.
                    time.sleep(SETTLE_SECONDS)
                for metric, value in figures.items():
                    if metric == "rss_total_mib":
                        continue
                    runs[system].setdefault(metric, []).append(value)

    medians = {s: {m: statistics.median(v) for m, v in runs[s].items()} for s in SYSTEMS}
    rows = []
    for metric, unit, what in METRICS:
        ours = medians["wasmlet"].get(metric)
        compact = medians["compact"].get(metric)
        ev = medians["eventlet"].get(metric)
        gv = medians["gevent"].get(metric)
        rows.append({
            "metric": metric,
            "unit": unit,
            "what": what,
            "wasmlet": ours,
            "compact": compact,
            "eventlet": ev,
            "gevent": gv,
            "wasmlet_over_eventlet": ratio(ours, ev),
            "wasmlet_over_gevent": ratio(ours, gv),
            "compact_over_eventlet": ratio(compact, ev),
            "compact_over_wasmlet": ratio(compact, ours),
        })

    info = machine()
    print()
    print(f"wasmlet vs eventlet {info['eventlet']} vs gevent {info['gevent']}: "
          f"median of {reps} run{'s' if reps > 1 else ''}"
          f"{' (QUICK MODE: small counts, not comparable)' if args.quick else ''}")
    print(f"machine: {info['cores']} cores, {info['memory_gib']} GiB, {info['cpu']}, "
          f"Linux {info['kernel']}, Python {info['python']}")
    for workload, full, quick, _, what in WORKLOADS:
        print(f"  {workload:10} {quick if args.quick else full:>7,} {what}")
    header = ["figure (lower is better)", "unit", "wasmlet", "compact", "eventlet", "gevent",
              "wasmlet/eventlet", "wasmlet/gevent", "compact/eventlet", "compact/wasmlet"]
    table = [header] + [
        [r["what"], r["unit"], fmt(r["wasmlet"]), fmt(r["compact"]), fmt(r["eventlet"]),
         fmt(r["gevent"]), fmt_ratio(r["wasmlet_over_eventlet"]),
         fmt_ratio(r["wasmlet_over_gevent"]), fmt_ratio(r["compact_over_eventlet"]),
         fmt_ratio(r["compact_over_wasmlet"])]
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for n, row in enumerate(table):
        print("  ".join(cell.ljust(w) if i < 2 else cell.rjust(w)
                        for i, (cell, w) in enumerate(zip(row, widths))))
        if n == 0:
            print("  ".join("-" * w for w in widths))

    result = {
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "repetitions": reps,
        "systems": systems,
        "machine": info,
        "workloads": {w: {"count": q if args.quick else f, "what": what, "wasmlet_flags": fl}
                      for w, f, q, fl, what in WORKLOADS},
        "figures": rows,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
