//! The reaper: a thread that drops what ended green threads and guests
//! leave (their calls, workers and memories), off the hub and outside every
//! fiber.

use crate::execution::lifecycle::LiveGuest;
use crate::execution::{Leftover, ThreadFuture};

/// Things to drop after the current poll, outside every fiber (see [`bury`]):
/// dropping a suspended green thread resumes its fiber to unwind it, which
/// must not happen from inside another green thread's fiber.
pub(crate) enum Grave {
    Call(ThreadFuture),
    /// What a returned call ran on, that its guest's model did not keep.
    Leftover(Leftover),
    Guest(Box<LiveGuest>),
}

/// Drops green threads' calls and workers, and ended guests' memories, on
/// another thread (the reaper), outside any fiber. The other guests' timers
/// would wait for all of it on the hub: giving back a store and instance
/// (dozens of allocations, and its fiber stack's pages past the pool's
/// resident share) costs about 5 µs, which a storm of kills would pay one
/// by one; a suspended call must first be resumed to unwind, which costs
/// about as much again (a guest ended with 100,000 green threads asleep held
/// the hub for over a second); a memory of hundreds of MiB takes the kernel
/// milliseconds.
pub(crate) fn bury(graves: Vec<Grave>) {
    for grave in graves {
        match grave {
            Grave::Call(call) => drop_elsewhere(Box::new(call)),
            Grave::Leftover(leftover) => drop_elsewhere(leftover),
            // After its calls, which the reaper drops first (in the order
            // sent): their stores point at the guest's WASI context, which
            // goes with it, after the stores its model kept (see
            // `LiveGuest`).
            Grave::Guest(live) => drop_elsewhere(live),
        }
    }
}

/// Drops `corpse` on a thread of its own (the reaper, started at the first
/// use); on this thread if that thread cannot be had.
///
/// Sound for a worker or a call, whose store holds its guest's `WasiPtr`
/// (`store_data`): dropping a store never reads its data's pointer, and
/// unwinding a suspended call runs no guest code and no host function (the
/// host function it is suspended in is dropped, and the trap that follows
/// unwinds the wasm frames), so the guest's WASI context may be gone by
/// then; the guest's memory lives on while a store holds it.
fn drop_elsewhere(corpse: Box<dyn Send>) {
    use std::sync::mpsc::{channel, Sender};
    use std::sync::OnceLock;
    static REAPER: OnceLock<Option<Sender<Box<dyn Send>>>> = OnceLock::new();
    let reaper = REAPER.get_or_init(|| {
        let (send, receive) = channel::<Box<dyn Send>>();
        std::thread::Builder::new()
            .name("wasmlet-reaper".into())
            .spawn(move || receive.into_iter().for_each(drop))
            .ok()
            .map(|_| send)
    });
    SENT_TO_REAPER.set(true);
    if let Some(reaper) = reaper {
        // The reaper never ends; were it gone, the corpse comes back in the
        // error and is dropped here.
        drop(reaper.send(corpse));
    }
}

thread_local! {
    /// This thread sent the reaper something since it last waited for it.
    static SENT_TO_REAPER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Waits until the reaper has dropped everything this thread sent it (the
/// reaper drops in order, so a marker sent last marks the end): what
/// `Hub::run` does before it returns, so that an embedder sees every
/// future of its host functions that a guest's end abandoned dropped by
/// then.
pub(crate) fn await_reaper() {
    struct Marker(std::sync::mpsc::SyncSender<()>);
    impl Drop for Marker {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }
    if !SENT_TO_REAPER.replace(false) {
        return;
    }
    let (send, receive) = std::sync::mpsc::sync_channel(1);
    drop_elsewhere(Box::new(Marker(send)));
    SENT_TO_REAPER.set(false);
    let _ = receive.recv();
}
