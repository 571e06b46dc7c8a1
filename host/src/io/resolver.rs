//! Name lookups for guests, on a few host threads shared fairly.
//!
//! The system's resolver blocks (a lookup that reaches no server takes
//! seconds), so lookups run on [`THREADS`] threads of their own, never on a
//! hub. Those threads are shared by every guest of the process, so one
//! guest must not take them from the others: it could flood them with slow
//! lookups, and a neighbour's lookup would wait behind all of them (3.5 s in
//! a test, when they were one FIFO queue). So:
//!
//! - each guest's lookups wait in a queue of its own, and the threads serve
//!   the guests with lookups waiting in turn (round robin), one lookup each;
//! - one guest's lookups hold at most [`MOST_PER_OWNER`] threads at once, so
//!   the others always find one free, however slow its lookups are.
//!
//! The lookup itself is a parameter ([`Resolver::new`]), so the rules are
//! tested without the network.

use std::collections::VecDeque;
use std::future::Future;
use std::net::{IpAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};

use rustc_hash::FxHashMap;

/// Threads that run lookups.
pub const THREADS: usize = 4;

/// Threads one guest's lookups may hold at once.
pub const MOST_PER_OWNER: usize = THREADS / 2;

/// Who asked for a lookup: a number unique in the process (see
/// [`new_owner`]).
pub type Owner = u64;

/// A fresh [`Owner`] for a new guest.
pub fn new_owner() -> Owner {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// What a lookup gives.
pub type Found = std::io::Result<Vec<IpAddr>>;

type LookupFn = dyn Fn(&str) -> Found + Send + Sync;

/// One lookup, waiting or running, and where its answer goes.
struct Job {
    name: String,
    answer: Arc<Mutex<Answer>>,
}

#[derive(Default)]
struct Answer {
    found: Option<Found>,
    waker: Option<Waker>,
}

/// The lookups waiting, by owner, and whose turn it is.
///
/// Invariant: an owner is in `turns` exactly when it has a lookup waiting
/// and fewer than [`MOST_PER_OWNER`] running; `running` holds only owners
/// with a lookup running.
#[derive(Default)]
struct Queues {
    waiting: FxHashMap<Owner, VecDeque<Job>>,
    running: FxHashMap<Owner, usize>,
    turns: VecDeque<Owner>,
}

impl Queues {
    /// The next lookup to run: the first owner's in turn, which goes to the
    /// back if it has more waiting (and room to run them).
    fn next(&mut self) -> Option<(Owner, Job)> {
        let owner = self.turns.pop_front()?;
        let queue = self
            .waiting
            .get_mut(&owner)
            .expect("an owner in turn waits");
        let job = queue.pop_front().expect("an owner in turn waits");
        let more = !queue.is_empty();
        if !more {
            self.waiting.remove(&owner);
        }
        let running = self.running.entry(owner).or_default();
        *running += 1;
        if more && *running < MOST_PER_OWNER {
            self.turns.push_back(owner);
        }
        Some((owner, job))
    }

    /// A lookup of `owner`'s ended: it may take its turn again.
    fn done(&mut self, owner: Owner) {
        let running = self.running.get_mut(&owner).expect("it ran");
        *running -= 1;
        let was_full = *running + 1 == MOST_PER_OWNER;
        if *running == 0 {
            self.running.remove(&owner);
        }
        if was_full && self.waiting.contains_key(&owner) {
            self.turns.push_back(owner);
        }
    }

    fn add(&mut self, owner: Owner, job: Job) {
        let queue = self.waiting.entry(owner).or_default();
        queue.push_back(job);
        let running = self.running.get(&owner).copied().unwrap_or(0);
        if queue.len() == 1 && running < MOST_PER_OWNER {
            self.turns.push_back(owner);
        }
    }
}

struct Shared {
    queues: Mutex<Queues>,
    work: Condvar,
    lookup: Box<LookupFn>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queues> {
        // The queues are consistent between calls: a panic elsewhere while
        // one was held leaves nothing half done.
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The lookup threads and their queues.
pub struct Resolver {
    shared: Arc<Shared>,
}

impl Resolver {
    /// The process's resolver, with the system's lookup; its threads start
    /// on first use.
    pub fn system() -> &'static Resolver {
        static RESOLVER: OnceLock<Resolver> = OnceLock::new();
        RESOLVER.get_or_init(|| {
            Resolver::new(|name| {
                (name, 0)
                    .to_socket_addrs()
                    .map(|addrs| addrs.map(|a| a.ip()).collect())
            })
        })
    }

    /// A resolver whose threads run `lookup`.
    pub fn new(lookup: impl Fn(&str) -> Found + Send + Sync + 'static) -> Resolver {
        let shared = Arc::new(Shared {
            queues: Mutex::default(),
            work: Condvar::new(),
            lookup: Box::new(lookup),
        });
        for i in 0..THREADS {
            let shared = shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("wasmlet-resolver-{i}"))
                .spawn(move || serve(&shared));
            if let Err(e) = spawned {
                tracing::error!("no resolver thread: {e}");
            }
        }
        Resolver { shared }
    }

    /// Looks `name` up for `owner`: a future that is ready with what was
    /// found.
    pub fn lookup(&self, owner: Owner, name: String) -> Lookup {
        let answer = Arc::new(Mutex::new(Answer::default()));
        let job = Job {
            name,
            answer: answer.clone(),
        };
        self.shared.lock().add(owner, job);
        self.shared.work.notify_one();
        Lookup { answer }
    }
}

/// A resolver thread: runs the lookup whose turn it is, for ever.
fn serve(shared: &Shared) {
    loop {
        let (owner, job) = {
            let mut queues = shared.lock();
            loop {
                if let Some(next) = queues.next() {
                    break next;
                }
                queues = shared.work.wait(queues).unwrap_or_else(|e| e.into_inner());
            }
        };
        let found = (shared.lookup)(&job.name);
        let waker = {
            let mut answer = job.answer.lock().unwrap_or_else(|e| e.into_inner());
            answer.found = Some(found);
            answer.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        shared.lock().done(owner);
        // Its turn may have come back: another thread may serve it.
        shared.work.notify_one();
    }
}

/// A lookup under way (see [`Resolver::lookup`]).
pub struct Lookup {
    answer: Arc<Mutex<Answer>>,
}

impl Future for Lookup {
    type Output = Found;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Found> {
        let mut answer = self.answer.lock().unwrap_or_else(|e| e.into_inner());
        match answer.found.take() {
            Some(found) => Poll::Ready(found),
            None => {
                answer.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Shut until the test opens it.
    type Gate = (Mutex<bool>, Condvar);

    /// A lookup that blocks until the test lets names through, and reports
    /// each name as it starts.
    fn gated() -> (Resolver, mpsc::Receiver<String>, Arc<Gate>) {
        let (started, starts) = mpsc::channel();
        let started = Mutex::new(started);
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let open = gate.clone();
        let resolver = Resolver::new(move |name| {
            started.lock().unwrap().send(name.to_string()).unwrap();
            if name.starts_with("slow") {
                let (lock, cond) = &*open;
                let mut go = lock.lock().unwrap();
                while !*go {
                    go = cond.wait(go).unwrap();
                }
            }
            Ok(vec![IpAddr::from([127, 0, 0, 1])])
        });
        (resolver, starts, gate)
    }

    fn block_on(lookup: Lookup) -> Found {
        let mut lookup = Box::pin(lookup);
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            if let Poll::Ready(found) = lookup.as_mut().poll(&mut cx) {
                return found;
            }
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_flood_of_slow_lookups_holds_half_the_threads_and_a_neighbour_is_served() {
        let (resolver, starts, gate) = gated();
        let flood: Vec<_> = (0..20)
            .map(|i| resolver.lookup(1, format!("slow-{i}")))
            .collect();
        // Two of the flood start (its share of the threads), no more.
        let first = [starts.recv().unwrap(), starts.recv().unwrap()];
        assert!(first.iter().all(|n| n.starts_with("slow")), "{first:?}");
        let neighbour = resolver.lookup(2, "quick".into());
        assert_eq!(starts.recv().unwrap(), "quick");
        assert!(block_on(neighbour).is_ok());
        assert_eq!(
            resolver.shared.lock().running.get(&1),
            Some(&MOST_PER_OWNER),
            "no third lookup of the flood started"
        );
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        for lookup in flood {
            assert!(block_on(lookup).is_ok());
        }
    }

    #[test]
    fn owners_with_lookups_waiting_are_served_in_turn() {
        let mut queues = Queues::default();
        let job = |name: &str| Job {
            name: name.into(),
            answer: Arc::default(),
        };
        for name in ["a1", "a2", "a3"] {
            queues.add(1, job(name));
        }
        queues.add(2, job("b1"));
        queues.add(3, job("c1"));
        let order: Vec<String> =
            std::iter::from_fn(|| queues.next().map(|(_, j)| j.name)).collect();
        // Owner 1 holds MOST_PER_OWNER (2) threads: its third waits.
        assert_eq!(order, ["a1", "b1", "c1", "a2"]);
        queues.done(1);
        assert_eq!(queues.next().map(|(_, j)| j.name).as_deref(), Some("a3"));
        assert!(queues.next().is_none());
    }
}
