"""The eventlet and gevent side of the benchmark suite (`bench/run`): the
same workloads as `bench/guest/src/main.rs` runs on wasmlet, each printing
one JSON object of figures to stdout.

Usage: python greenbench.py eventlet|gevent WORKLOAD COUNT
"""
import json
import sys
import time

WAVE = 1000
WORKERS = 100


def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Green:
    """The handful of calls the workloads need, from eventlet or gevent."""

    def __init__(self, system):
        if system == "eventlet":
            import eventlet
            import eventlet.event
            import eventlet.queue

            self.spawn = eventlet.spawn
            self.sleep = eventlet.sleep
            self.wait = lambda gt: gt.wait()
            self.kill = lambda gt: gt.kill()
            self.Queue = eventlet.queue.Queue
            self.LightQueue = eventlet.queue.LightQueue
            self.Event = eventlet.event.Event
            self.send = lambda e: e.send()
        elif system == "gevent":
            import gevent
            import gevent.event
            import gevent.queue

            self.spawn = gevent.spawn
            self.sleep = gevent.sleep
            self.wait = lambda g: g.get()
            self.kill = lambda g: g.kill()
            self.Queue = gevent.queue.Queue
            self.LightQueue = gevent.queue.Queue
            self.Event = gevent.event.Event
            self.send = lambda e: e.set()
        else:
            raise SystemExit(f"unknown system {system!r}")


def spawn(g, count):
    started = time.perf_counter()
    done = 0
    total = 0
    while done < count:
        n = min(WAVE, count - done)
        wave = [g.spawn(lambda i=i: i) for i in range(n)]
        for gt in wave:
            total += g.wait(gt)
        done += n
    return {"spawn_us": (time.perf_counter() - started) * 1e6 / count}


def switch(g, rounds):
    def player():
        for _ in range(rounds):
            g.sleep(0)

    started = time.perf_counter()
    players = [g.spawn(player) for _ in range(2)]
    for p in players:
        g.wait(p)
    return {"switch_ns": (time.perf_counter() - started) * 1e9 / (2 * rounds)}


def concurrent(g, count):
    g.wait(g.spawn(lambda: None))
    before = rss_kib()
    started = time.perf_counter()
    sleepers = [g.spawn(g.sleep, 3600) for _ in range(count)]
    g.sleep(0)
    start_ms = (time.perf_counter() - started) * 1e3
    after = rss_kib()
    stop = time.perf_counter()
    for s in sleepers:
        g.kill(s)
    kill_us = (time.perf_counter() - stop) * 1e6 / count
    return {
        "start_ms": start_ms,
        "rss_per_thread_bytes": (after - before) * 1024 / count,
        "rss_total_mib": after / 1024,
        "kill_us": kill_us,
    }


def timers(g, count):
    go = g.Event()
    done = g.Event()
    late = []

    def sleeper(settle, want):
        go.wait()
        g.sleep(settle)
        start = time.perf_counter()
        g.sleep(want)
        late.append(max(0.0, time.perf_counter() - start - want) * 1e3)
        if len(late) == count:
            g.send(done)

    for i in range(count):
        g.spawn(sleeper, (50_000 + i * 7919 % 100_000) / 1e6, (1000 + (i * 7907 % 9001)) / 1e6)
    g.sleep(0)
    g.send(go)
    done.wait()
    late.sort()

    def pct(p):
        return late[int((len(late) - 1) * p)]

    return {"late_p50_ms": pct(0.5), "late_p99_ms": pct(0.99), "late_max_ms": late[-1]}


def fanout(g, count):
    jobs = g.Queue(WORKERS)
    results = g.LightQueue()

    def worker():
        while True:
            n = jobs.get()
            if n is None:
                return
            results.put(n * 2)

    def producer():
        for n in range(count):
            jobs.put(n)
        for _ in range(WORKERS):
            jobs.put(None)

    started = time.perf_counter()
    for _ in range(WORKERS):
        g.spawn(worker)
    g.spawn(producer)
    total = sum(results.get() for _ in range(count))
    assert total == count * (count - 1), "fan-out lost or duplicated items"
    return {"fanout_us": (time.perf_counter() - started) * 1e6 / count}


def peak_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def spawnall(g, count):
    started = time.perf_counter()
    threads = [g.spawn(lambda i=i: i) for i in range(count)]
    total = sum(g.wait(t) for t in threads)
    assert total == count * (count - 1) // 2
    return {
        "spawnall_us": (time.perf_counter() - started) * 1e6 / count,
        "spawnall_peak_mib": peak_kib() / 1024,
    }


MANY_ROUNDS = 20


def switchmany(g, count):
    def player():
        for _ in range(MANY_ROUNDS):
            g.sleep(0)

    players = [g.spawn(player) for _ in range(count)]
    g.sleep(0)
    started = time.perf_counter()
    for p in players:
        g.wait(p)
    return {"switchmany_ns": (time.perf_counter() - started) * 1e9 / (count * (MANY_ROUNDS - 1))}


WORKLOADS = {
    "spawn": spawn,
    "switch": switch,
    "concurrent": concurrent,
    "timers": timers,
    "fanout": fanout,
    "spawnall": spawnall,
    "switchmany": switchmany,
}

if __name__ == "__main__":
    system, workload, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    print(json.dumps(WORKLOADS[workload](Green(system), count)))
