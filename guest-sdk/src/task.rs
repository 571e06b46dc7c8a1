//! The guest side of a green thread's life: the task handed to the hub's
//! `spawn`, the two exports through which the hub runs it (`wasmlet-run`,
//! `wasmlet-finish`), its links, and the panic hook that records a panic's
//! message before the trap ends the green thread.

use std::cell::Cell;
use std::error::Error;
use std::panic::PanicHookInfo;
use std::ptr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

use crate::abi::wasmlet::runtime::hub::{self, Ending};
use crate::error::GreenThreadError;

/// What a green thread runs, and what it leaves behind when it cannot finish.
pub(crate) trait Body {
    /// Runs the green thread's function and records its result.
    fn run(&mut self);
    /// Records why the green thread ended without a result.
    fn fail(&mut self, error: GreenThreadError);
}

/// A spawned green thread's state in guest memory; the hub holds a pointer to
/// it from `spawn` until `wasmlet-run` or `wasmlet-finish` frees it.
pub(crate) struct Task {
    /// Set by the panic hook: a panic traps, and `wasmlet-finish` (running on a
    /// fresh instance) still finds the message here.
    panic: Option<String>,
    body: Box<dyn Body>,
}

/// A link callback as handed to the hub: a thin pointer to a boxed closure.
pub(crate) type Callback = Box<dyn FnOnce()>;

/// The kill error as handed to the hub.
pub(crate) type KillError = Rc<dyn Error>;

thread_local! {
    /// The task of the green thread running on this instance (null on main).
    static CURRENT: Cell<*mut Task> = const { Cell::new(ptr::null_mut()) };
}

static HUB_EXCEPTIONS: AtomicBool = AtomicBool::new(true);
static HOOK: Once = Once::new();

pub(crate) fn set_hub_exceptions(on: bool) {
    HUB_EXCEPTIONS.store(on, Ordering::Relaxed);
}

/// Hands `body` to the hub as a new green thread.
pub(crate) fn start(body: Box<dyn Body>, stack_size: u32, delay_ns: u64, local: bool) -> u64 {
    HOOK.call_once(|| std::panic::set_hook(Box::new(panic_hook)));
    let task = Box::into_raw(Box::new(Task { panic: None, body }));
    let flags = if local {
        hub::SpawnFlags::LOCAL
    } else {
        hub::SpawnFlags::empty()
    };
    hub::spawn(task as u32, stack_size, delay_ns, flags)
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

fn panic_hook(info: &PanicHookInfo<'_>) {
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
        eprintln!("main green thread panicked{location}:\n{msg}");
        return;
    }
    if HUB_EXCEPTIONS.load(Ordering::Relaxed) {
        let number = hub::current();
        eprintln!("green thread #{number} panicked{location}:\n{msg}");
    }
    // SAFETY: CURRENT points at this green thread's live task; only its
    // `panic` field is written, never aliased by a reference (run() borrows
    // only `body`).
    unsafe { ptr::addr_of_mut!((*task).panic).write(Some(msg)) };
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

struct Exports;

impl crate::abi::Guest for Exports {
    fn wasmlet_run(task: u32) {
        // SAFETY: see `__wasi_init_tp`.
        unsafe { __wasi_init_tp() };
        let task = task as usize as *mut Task;
        CURRENT.with(|c| c.set(task));
        // SAFETY: the hub hands back the pointer `start` gave it, once, and
        // no other green thread touches a task it did not spawn... except
        // through this green thread's own TLS (the panic hook, disjoint field).
        unsafe { (*ptr::addr_of_mut!((*task).body)).run() };
        run_links();
        CURRENT.with(|c| c.set(ptr::null_mut()));
        // SAFETY: as above; nothing refers to the task any more.
        drop(unsafe { Box::from_raw(task) });
    }

    fn wasmlet_finish(task: u32, how: Ending, error: u32) {
        // SAFETY: see `__wasi_init_tp`.
        unsafe { __wasi_init_tp() };
        // SAFETY: the hub hands back the pointer `start` gave it: the run that
        // would have freed it was dropped (or never started).
        let mut task = unsafe { Box::from_raw(task as usize as *mut Task) };
        // Its Timeouts belonged to the frames that were dropped; a wait it
        // was in hands back what it was given.
        crate::timeout::forget_all();
        crate::waiter::finish_abandoned_wait();
        let error = match how {
            Ending::Killed if error != 0 => {
                // SAFETY: a kill error the hub kept for this thread.
                GreenThreadError::KilledWith(unsafe { kill_error_from_raw(error) })
            }
            Ending::Killed => GreenThreadError::Killed,
            Ending::Cancelled => GreenThreadError::Cancelled,
            trap => match task.panic.take() {
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
        task.body.fail(error);
        run_links();
    }
}

crate::abi::export!(Exports with_types_in crate::abi);
