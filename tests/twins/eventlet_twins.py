"""eventlet's twin of tests/guests/src/bin/eventlet_twins.rs: the same
programs, printing the same lines. tests/twins.rs runs both and compares
(eventlet 0.41.3, from bench/requirements.txt)."""
import warnings

warnings.simplefilter("ignore")

import eventlet  # noqa: E402
from eventlet import hubs, queue  # noqa: E402
from greenlet import GreenletExit  # noqa: E402


def wait_of(gt):
    try:
        r = gt.wait()
    except GreenletExit:
        return "killed"
    return "killed" if isinstance(r, GreenletExit) else "ok"


# 1. kill(getcurrent()) while holding a permit: the permit comes back.
sem = eventlet.Semaphore(1)


def holder():
    with sem:
        eventlet.kill(eventlet.getcurrent())
        print("after the self-kill, still running")


gt = eventlet.spawn(holder)
print(f"self-kill holding a permit: wait {wait_of(gt)}, balance {sem.balance}")

# 2. CappedSemaphore.balance with blocked acquirers, then a blocked releaser.
capped = eventlet.CappedSemaphore(0, 2)
acquirers = [eventlet.spawn(capped.acquire) for _ in range(3)]
eventlet.sleep(0)
print(f"capped (0, 2), 3 acquirers blocked: balance {capped.balance}")
for _ in range(3):
    capped.release()
for a in acquirers:
    a.wait()
capped = eventlet.CappedSemaphore(2, 2)
releaser = eventlet.spawn(capped.release)
eventlet.sleep(0)
print(f"capped (2, 2), 1 releaser blocked: balance {capped.balance}")
capped.acquire()
releaser.wait()

# 3. A GreenPile counts a spawn before it waits for a pool slot.
pool = eventlet.GreenPool(1)
pile = eventlet.GreenPile(pool)
pool.spawn(eventlet.sleep, 0.005)
feeder = eventlet.spawn(pile.spawn, lambda: 1)
eventlet.sleep(0)
print(f"pile iterated while a spawn waits for a slot: {list(pile)}")
feeder.wait()

# 4. A callback of the hub takes a blocked putter's item without waiting.
q = queue.Queue(0)
putter = eventlet.spawn(q.put, "item")
eventlet.sleep(0)
got = []


def take():
    try:
        got.append(q.get_nowait())
    except queue.Empty:
        got.append("Empty")


hubs.get_hub().schedule_call_global(0, take)
eventlet.sleep(0.001)
putter.wait()
print(f"a scheduled call took a blocked putter's item: {got[0]}")
