//! The guest side of a green thread's life: the task handed to the hub's
//! `spawn`, the two exports through which the hub runs it (`wasmlet-run`,
//! `wasmlet-finish`), its links, and the panic hook that records a panic's
//! message before the trap ends the green thread.
//!
//! A task is reached only through raw pointers (the hub's copy, and
//! `CURRENT` for the panic hook), never through a `Box` while the green
//! thread may still trap: a trap ends the call wherever it is, and the
//! hub's `wasmlet-finish` then takes the task over. The task's `body` is
//! taken out before it is dropped, so a trap while dropping it (a `Drop`
//! that panics) leaves a task that `wasmlet-finish` knows is spent.

use std::cell::Cell;
use std::panic::PanicHookInfo;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

use crate::abi::wasmlet::runtime::hub::{self, Ending};
use crate::error::{GreenThreadError, SpawnError};

impl From<hub::SpawnRefusal> for SpawnError {
    fn from(why: hub::SpawnRefusal) -> SpawnError {
        match why {
            hub::SpawnRefusal::HubFull => SpawnError::HubFull,
            hub::SpawnRefusal::GuestFull => SpawnError::GuestFull,
            hub::SpawnRefusal::HostMemory => SpawnError::HostMemory,
            hub::SpawnRefusal::LinearMemory => SpawnError::LinearMemory,
            hub::SpawnRefusal::Unsupported => SpawnError::Unsupported,
        }
    }
}

/// What a green thread runs, and what it leaves behind when it cannot finish.
pub(crate) trait Body {
    /// Runs the green thread's function and records its result. Returns
    /// false (recording nothing) if the green thread was killed while it
    /// ran: its ending is the hub's `wasmlet-finish`.
    fn run(&mut self) -> bool;
    /// Records why the green thread ended without a result.
    fn fail(&mut self, error: GreenThreadError);
}

/// A spawned green thread's state in guest memory; the hub holds a pointer to
/// it from `spawn` until `wasmlet-run` or `wasmlet-finish` frees it.
pub(crate) struct Task {
    /// Set by the panic hook: a panic traps, and `wasmlet-finish` (running on a
    /// fresh instance) still finds the message here.
    panic: Option<String>,
    /// None once the run has finished with it (being dropped).
    body: Option<Box<dyn Body>>,
}

/// A link callback as handed to the hub: a thin pointer to a boxed closure.
pub(crate) type Callback = Box<dyn FnOnce()>;

/// The kill error as handed to the hub.
pub(crate) type KillError = crate::error::ErrorObject;

thread_local! {
    /// The task of the green thread running on this instance (null on main).
    static CURRENT: Cell<*mut Task> = const { Cell::new(ptr::null_mut()) };
}

static HUB_EXCEPTIONS: AtomicBool = AtomicBool::new(true);
static HOOK: Once = Once::new();

thread_local! {
    /// Set while the SDK's hook calls the hook it chains to for a green
    /// thread's panic, which the SDK reports itself (or not, as
    /// `hub_exceptions` says): std's default hook then stays quiet (see
    /// [`quiet_default_hook`]); a guest's own hook runs as usual.
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Runs before `main` (from `.init_array`, which wasi-libc's start code runs
/// first): wraps std's default panic hook so that it can be told to stay
/// quiet, before any guest code can install a hook of its own.
#[used]
#[link_section = ".init_array"]
static INSTALL_QUIET_DEFAULT: extern "C" fn() = quiet_default_hook;

extern "C" fn quiet_default_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !QUIET.with(Cell::get) {
            default(info);
        }
    }));
}

/// Installs the SDK's panic hook, chained to the one in place (the guest's
/// own, if it set one before its first spawn; else std's default).
fn install_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let green = panic_hook(info);
        QUIET.with(|q| q.set(green));
        previous(info);
        QUIET.with(|q| q.set(false));
    }));
}

pub(crate) fn set_hub_exceptions(on: bool) {
    HUB_EXCEPTIONS.store(on, Ordering::Relaxed);
}

/// Hands `body` to the hub as a new green thread.
pub(crate) fn start(body: Box<dyn Body>, stack_size: u32, delay_ns: u64, local: bool) -> u64 {
    let (task, flags) = prepare(body, local);
    hub::spawn(task as u32, stack_size, delay_ns, flags)
}

/// [`start`], but a refusal comes back instead of trapping the caller (the
/// body is dropped, unrun).
pub(crate) fn try_start(
    body: Box<dyn Body>,
    stack_size: u32,
    delay_ns: u64,
    local: bool,
) -> Result<u64, SpawnError> {
    let (task, flags) = prepare(body, local);
    match hub::try_spawn(task as u32, stack_size, delay_ns, flags) {
        0 => {
            let why = hub::last_spawn_refusal();
            // SAFETY: made by `prepare` just now, and the hub refused it, so
            // nothing else holds it.
            drop(unsafe { Box::from_raw(task) });
            Err(SpawnError::from(why))
        }
        id => Ok(id),
    }
}

fn prepare(body: Box<dyn Body>, local: bool) -> (*mut Task, hub::SpawnFlags) {
    HOOK.call_once(|| {
        install_hook();
        crate::thread_keys::locate_table();
    });
    let task = Box::into_raw(Box::new(Task {
        panic: None,
        body: Some(body),
    }));
    let flags = if local {
        hub::SpawnFlags::LOCAL
    } else {
        hub::SpawnFlags::empty()
    };
    (task, flags)
}

/// True once the calling green thread has been killed (it is unwinding:
/// every blocking call reports [`Interrupted::Killed`](crate::Interrupted)).
pub(crate) fn killed() -> bool {
    hub::killed()
}

/// Boxes `f` for the hub's `link`.
pub(crate) fn callback_into_raw(f: Callback) -> u32 {
    Box::into_raw(Box::new(f)) as u32
}

/// Takes back a callback the hub returned.
///
/// # Safety
/// `raw` came from [`callback_into_raw`] and the hub handed it back (from
/// `next-link` or `unlink`), so nothing else owns it.
pub(crate) unsafe fn callback_from_raw(raw: u32) -> Callback {
    *Box::from_raw(raw as usize as *mut Callback)
}

pub(crate) fn kill_error_into_raw(e: KillError) -> u32 {
    Box::into_raw(Box::new(e)) as u32
}

/// # Safety
/// `raw` came from [`kill_error_into_raw`] and the hub did not keep it.
pub(crate) unsafe fn kill_error_from_raw(raw: u32) -> KillError {
    *Box::from_raw(raw as usize as *mut KillError)
}

/// Runs the ending thread's links in link order; a link added meanwhile is
/// handed out by a later `next-link`, so it runs exactly once.
fn run_links() {
    loop {
        let raw = hub::next_link();
        if raw == 0 {
            break;
        }
        // SAFETY: the hub hands each callback back exactly once.
        unsafe { callback_from_raw(raw)() };
    }
}

fn describe(how: Ending) -> &'static str {
    match how {
        Ending::Killed => "killed",
        Ending::Cancelled => "cancelled",
        Ending::TrapUnreachable => "unreachable code reached",
        Ending::TrapStackOverflow => "call stack exhausted (native stack overflow)",
        Ending::TrapShadowStackOverflow => {
            "shadow stack overflow: spawn it with a larger Builder::stack_size"
        }
        Ending::TrapMemoryOutOfBounds => "out of bounds memory access",
        Ending::TrapIntegerDivideByZero => "integer divide by zero",
        Ending::TrapIntegerOverflow => "integer overflow",
        Ending::TrapBadConversion => "invalid conversion to integer",
        Ending::TrapIndirectCall => "indirect call to a null or mistyped function",
        Ending::TrapOther => "wasm trap",
    }
}

/// Records a green thread's panic message for its `wasmlet-finish`, and
/// reports the panic unless `hub_exceptions(false)`; true if the panic was a
/// green thread's (std's default hook then stays quiet). A panic of main is
/// left to the hook it chains to.
fn panic_hook(info: &PanicHookInfo<'_>) -> bool {
    let msg = if let Some(s) = info.payload().downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = info.payload().downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_string()
    };
    let location = info
        .location()
        .map(|l| format!(" at {}:{}:{}", l.file(), l.line(), l.column()))
        .unwrap_or_default();
    let task = CURRENT.with(Cell::get);
    if task.is_null() {
        return false;
    }
    // A panic on the way out of a kill (an `unwrap` of the kill's error)
    // ends the thread as killed: nothing to report.
    if HUB_EXCEPTIONS.load(Ordering::Relaxed) && !killed() {
        let number = hub::current();
        eprintln!("green thread #{number} panicked{location}:\n{msg}");
    }
    // SAFETY: CURRENT points at this green thread's live task, which only
    // raw pointers reach (see the module docs); only its `panic` field is
    // written, and no reference to that field is live: `wasmlet-run` and
    // `wasmlet-finish` borrow only `body`.
    unsafe { ptr::addr_of_mut!((*task).panic).write(Some(msg)) };
    true
}

extern "C" {
    /// wasi-libc's set-up of the calling thread's `struct pthread` in its TLS
    /// block, which the hub has just pointed at a fresh copy of the TLS
    /// image. Its thread id matters: wasi-libc's locks treat thread id 0 as
    /// "unlocked", so a green thread must not run with the zeroed one a fresh
    /// TLS block holds. Called first thing in both exports, before any TLS
    /// access; safe to call again on the same block.
    fn __wasi_init_tp();
}

/// The task of a green thread the host started to call one of the guest's
/// functions: the hub copies the name and input into its body and keeps
/// the task for `wasmlet-finish`.
fn begin_call() -> *mut Task {
    HOOK.call_once(|| {
        install_hook();
        crate::thread_keys::locate_table();
    });
    let mut body = Box::new(crate::plugin::CallBody::new());
    let (name, input) = (
        body.name.as_mut_ptr() as u32,
        body.input.as_mut_ptr() as u32,
    );
    let task = Box::into_raw(Box::new(Task {
        panic: None,
        body: Some(body),
    }));
    // The buffers live in the body's heap allocations, which moving the
    // box did not move.
    hub::call_begin(task as u32, name, input);
    task
}

struct Exports;

impl crate::abi::Guest for Exports {
    fn wasmlet_run(task: u32) {
        // SAFETY: see `__wasi_init_tp`.
        unsafe { __wasi_init_tp() };
        crate::thread_keys::give_table();
        let task = match task {
            0 => begin_call(),
            task => task as usize as *mut Task,
        };
        CURRENT.with(|c| c.set(task));
        // SAFETY: the hub hands back the pointer `start` gave it, once; only
        // the `body` field is borrowed (the panic hook writes `panic`).
        if let Some(body) = unsafe { &mut *ptr::addr_of_mut!((*task).body) } {
            if !body.run() {
                // Killed, and its frames have unwound: the hub ends it
                // through `wasmlet-finish`, which records the kill and runs
                // its links (the task stays for it).
                return;
            }
        }
        run_links();
        // SAFETY: as above. Taken out first: if dropping it traps, the
        // task `wasmlet-finish` gets is marked spent, not dropped twice.
        let body = unsafe { (*ptr::addr_of_mut!((*task).body)).take() };
        drop(body);
        crate::thread_keys::run_destructors();
        CURRENT.with(|c| c.set(ptr::null_mut()));
        // SAFETY: as above; nothing refers to the task any more.
        drop(unsafe { Box::from_raw(task) });
    }

    fn wasmlet_finish(task: u32, how: Ending, error: u32) {
        if task == 0 {
            // A host call cancelled before it began: it has nothing yet.
            return;
        }
        // SAFETY: see `__wasi_init_tp`. Its thread-locals are still in its
        // TLS block; so is its key table, which this points it at again.
        unsafe { __wasi_init_tp() };
        crate::thread_keys::give_table();
        // The hub hands back the pointer `start` gave it: the run that would
        // have freed it was dropped (or never started). Kept raw while this
        // call may trap: a panic below reaches it through CURRENT.
        let task = task as usize as *mut Task;
        CURRENT.with(|c| c.set(task));
        // Its Timeouts belonged to the frames that were dropped; a wait it
        // was in hands back what it was given.
        crate::timeout::forget_all();
        crate::waiter::finish_abandoned_wait();
        // SAFETY: the task is this green thread's (see above); no reference
        // to these fields is live.
        let (panic, body) = unsafe {
            (
                (*ptr::addr_of_mut!((*task).panic)).take(),
                (*ptr::addr_of_mut!((*task).body)).take(),
            )
        };
        // A body already taken: the run finished it and trapped while
        // dropping it; its result and links are done.
        if let Some(mut body) = body {
            let error = match how {
                Ending::Killed if error != 0 => {
                    // SAFETY: a kill error the hub kept for this thread.
                    GreenThreadError::KilledWith(unsafe { kill_error_from_raw(error) })
                }
                Ending::Killed => GreenThreadError::Killed,
                Ending::Cancelled => GreenThreadError::Cancelled,
                trap => match panic {
                    Some(msg) => GreenThreadError::Panicked(msg),
                    None => {
                        if HUB_EXCEPTIONS.load(Ordering::Relaxed) {
                            let number = hub::current();
                            eprintln!("green thread #{number} failed: {}", describe(trap));
                        }
                        GreenThreadError::Trapped(describe(trap))
                    }
                },
            };
            body.fail(error);
            run_links();
        } else if how == Ending::Killed && error != 0 {
            // SAFETY: a kill error the hub kept for this thread, unused.
            drop(unsafe { kill_error_from_raw(error) });
        }
        // The frames that used its thread-locals are gone: drop them.
        crate::thread_keys::run_destructors();
        CURRENT.with(|c| c.set(ptr::null_mut()));
        // SAFETY: nothing refers to the task any more.
        drop(unsafe { Box::from_raw(task) });
    }
}

crate::abi::export!(Exports with_types_in crate::abi);
