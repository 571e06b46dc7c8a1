"""Where a sleeping green thread's memory goes: the host's resident memory
split into its three kinds, read from /proc/PID/smaps while the benchmark
guest holds COUNT green threads asleep (`greenbench hold COUNT`, the same
sleepers as the `concurrent` workload), minus what it held before they were
spawned, in both execution models (`--threads fibers` and `compact`).
Started by `bench/run`; prints a table and writes JSON.

- fiber stacks: wasmlet's pool of native stacks (`host/src/execution/fiber_stack.rs`),
  read-write anonymous mappings of 256 stacks each (adjacent ones merge);
- guest memory: the guest's shared linear memory, the read-write part of a
  reservation whose rest (up to 4 GiB and its guard) is inaccessible;
- host heap and the rest: everything else that is resident, mostly malloc's
  heap, where each green thread's wasmtime store and instance live (fibers)
  or its scheduling record and saved-state record (compact).

In the compact model a sleeping green thread holds no store, instance or
fiber stack: its cost is its shadow stack's touched pages in guest memory
(the top of its slot: its TLS block, its live frames and, just under them,
its saved wasm frames; one page on the default 32 KiB stack) and its records
on the host heap.
"""
import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WASMLET = ROOT / "target/release/wasmlet"
BUILT = ROOT / "bench/guest/target/wasm32-wasip1-threads/release"
# The benchmark guest (190 KB of wasm), and a realistic one (regex and
# serde_json, 1.3 MB), whose instances are larger.
GUESTS = {"benchmark guest": BUILT / "greenbench.wasm", "realistic guest": BUILT / "realistic.wasm"}
HEADER = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$")
FIBER_CHUNK_MIN = 256 * (1 << 20)  # 256 stacks of the default 1 MiB


def mappings(pid):
    """Each mapping of the process: (start, end, permissions, name, rss bytes)."""
    out = []
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            m = HEADER.match(line)
            if m:
                out.append([int(m[1], 16), int(m[2], 16), m[3], m[4], 0])
            elif line.startswith("Rss:"):
                out[-1][4] = int(line.split()[1]) * 1024
    return out


def classify(maps, memory_size):
    """Resident bytes by kind; `memory_size` is the guest memory's size."""
    kinds = {"fiber_stacks": 0, "guest_memory": 0, "host_heap_and_rest": 0}
    anon_rw = [i for i, m in enumerate(maps) if m[2].startswith("rw") and m[3] == ""]
    # The guest memory: accessible up to its size, the rest of its
    # reservation inaccessible right after it.
    reserved = [
        i for i in anon_rw
        if i + 1 < len(maps) and maps[i + 1][0] == maps[i][1] and maps[i + 1][2].startswith("---")
    ]
    guest = min(reserved, key=lambda i: abs(maps[i][1] - maps[i][0] - memory_size), default=None)
    for i, (start, end, _perms, _name, rss) in enumerate(maps):
        if i == guest:
            kinds["guest_memory"] += rss
        elif i in anon_rw and end - start >= FIBER_CHUNK_MIN:
            kinds["fiber_stacks"] += rss
        else:
            kinds["host_heap_and_rest"] += rss
    return kinds


MODELS = ["fibers", "compact"]


def measure(guest, count, model, stack=None):
    extra = [str(stack)] if stack else []
    proc = subprocess.Popen(
        [str(WASMLET), "run", "--threads", model, str(guest), "--", "hold", str(count), *extra],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline().split()
        assert line and line[0] == "base", line
        before = classify(mappings(proc.pid), int(line[1]))
        line = proc.stdout.readline().split()
        if not line or line[0] != "ready":
            sys.exit(f"the guest did not get its {count} green threads asleep: {line!r}")
        after = classify(mappings(proc.pid), int(line[1]))
    finally:
        proc.wait(timeout=60)
    return {k: (after[k] - before[k]) / count for k in after}


def rss(pid):
    """The process's resident bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def measure_guests(guest, guests, count, model):
    """Resident bytes per sleeping green thread with `guests` copies of the
    guest on one hub (`memory-guests`, an embedder), each holding `count`
    on the defaults (the default 32 KiB shadow stack): the process's whole
    resident memory, once every guest is asleep, less what it held once
    every guest had started."""
    example = ROOT / "target/release/examples/memory-guests"
    subprocess.run(["cargo", "build", "--release", "--quiet", "--example", "memory-guests"],
                   cwd=ROOT, check=True)
    # Held long enough for the last guest to get its sleepers started.
    proc = subprocess.Popen(
        [str(example), str(guests), model, str(guest), "hold", str(count), "0", "60"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        seen = {"base": 0, "ready": 0}
        before = None
        while seen["ready"] < guests:
            line = proc.stdout.readline().split()
            if not line or line[0] not in seen:
                sys.exit(f"the guests did not get their green threads asleep: {line!r}")
            seen[line[0]] += 1
            if line[0] == "base" and seen["base"] == guests:
                before = rss(proc.pid)
        after = rss(proc.pid)
    finally:
        proc.kill()
        proc.wait(timeout=60)
    return (after - before) / (guests * count)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--quick", action="store_true", help="1,000 green threads; no JSON unless --out")
    ap.add_argument("--out", help="where to write the JSON (default bench/results/memory.json)")
    args = ap.parse_args()
    if args.quick:
        args.count = 1_000
    elif args.out is None:
        args.out = str(ROOT / "bench/results/memory.json")
    figures = {"count": args.count}
    columns = []
    for name, guest in GUESTS.items():
        for model in MODELS:
            per = measure(guest, args.count, model)
            if not args.quick:
                # Let the kernel take back the gigabytes first (as
                # bench/suite.py does): its reclaim would land in the next
                # measurement.
                time.sleep(3)
            per["total"] = sum(per.values())
            key = f"{name.replace(' ', '_')}_{model}"
            figures[key] = per
            columns.append((f"{name.split()[0]}, {model}", key))
    print(f"Resident memory per sleeping green thread ({args.count:,} asleep, bytes):")
    print(f"  {'':<22} " + " ".join(f"{title:>19}" for title, _ in columns))
    for kind in figures[columns[0][1]]:
        row = " ".join(f"{figures[key][kind]:>19,.0f}" for _, key in columns)
        print(f"  {kind.replace('_', ' '):<22} {row}")
    if not args.quick:
        # A million green threads asleep in one guest in the compact model,
        # with 2 KiB shadow stacks (wasm32's 4 GiB bounds stack size times
        # threads per guest: a million of the default 32 KiB would need
        # 32 GiB).
        time.sleep(3)
        million = 1_000_000
        per = measure(GUESTS["benchmark guest"], million, "compact", stack=2048)
        total = sum(per.values()) * million
        figures["million_compact_2k_stacks"] = {"per_thread": sum(per.values()), "total_gb": total / 1e9}
        print(f"  1,000,000 asleep in one guest, compact, 2 KiB stacks: "
              f"{sum(per.values()):,.0f} B each, {total / 1e9:.2f} GB in all")
        # And across ten guests on one hub, on the defaults (32 KiB stacks:
        # 100,000 of them fill 3.1 of a guest's 4 GiB).
        time.sleep(3)
        per = measure_guests(GUESTS["benchmark guest"], 10, 100_000, "compact")
        figures["million_compact_ten_guests"] = {"per_thread": per, "total_gb": per * million / 1e9}
        print(f"  1,000,000 asleep across ten guests on one hub, compact, defaults: "
              f"{per:,.0f} B each, {per * million / 1e9:.2f} GB in all")
    if args.out:
        # On a fresh clone with `bench/run --out FILE` elsewhere, nothing has
        # made bench/results/ yet.
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")

if __name__ == "__main__":
    main()
