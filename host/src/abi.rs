//! The WIT types of `wit/hub.wit` as the host sees them: plain enums with the
//! canonical ABI's discriminants. Free of wasmtime, so the scheduler can use
//! them; `tests/all/contract.rs` checks the host's functions against the WIT.
//! Also the WASI errno values of the WASI functions the hub answers itself.

/// WASI preview 1 errno values the hub answers with.
pub(crate) mod errno {
    pub const SUCCESS: i32 = 0;
    pub const AGAIN: i32 = 6;
    pub const BADF: i32 = 8;
    pub const FAULT: i32 = 21;
    pub const INTR: i32 = 27;
    pub const INVAL: i32 = 28;
    pub const IO: i32 = 29;
    pub const MFILE: i32 = 33;
    pub const PIPE: i32 = 64;
}

/// The WIT interface's import module name.
pub const HUB_MODULE: &str = "wasmlet:runtime/hub@0.1.0";

/// A green thread's id (`thread-id` in the WIT): the guest's spawn count at
/// its birth, main being 1. Never reused while the guest runs, never 0.
pub(crate) type ThreadId = u64;

/// How a green thread ended early (`ending` in the WIT), as handed to the
/// guest's `wasmlet-finish`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Ending {
    Killed = 0,
    Cancelled,
    TrapUnreachable,
    TrapStackOverflow,
    TrapShadowStackOverflow,
    TrapMemoryOutOfBounds,
    TrapIntegerDivideByZero,
    TrapIntegerOverflow,
    TrapBadConversion,
    TrapIndirectCall,
    TrapOther,
}

/// What `kill` and `cancel` did (`kill-status` in the WIT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum KillStatus {
    Killed = 0,
    AlreadyStarted,
    NotAlive,
}

/// What `join` found (`join-status` in the WIT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum JoinStatus {
    Ended = 0,
    IsSelf,
    TimedOut,
}

/// `spawn-flags.local`.
pub(crate) const SPAWN_LOCAL: u32 = 1;

/// A WIT `timeout-ns`: `u64::MAX` means none.
pub(crate) fn timeout_of(ns: u64) -> Option<std::time::Duration> {
    (ns != u64::MAX).then(|| std::time::Duration::from_nanos(ns))
}

/// Why `try-spawn` started no green thread (`spawn-refusal` in the WIT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum SpawnRefusal {
    HubFull = 0,
    GuestFull,
    HostMemory,
    LinearMemory,
    Unsupported,
}

/// How a host call of a guest function ended (`call-status` in the WIT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CallStatus {
    Ok,
    Failed,
    NoSuchFunction,
    Panicked,
}

impl CallStatus {
    pub(crate) fn from_u32(status: u32) -> Option<CallStatus> {
        match status {
            0 => Some(CallStatus::Ok),
            1 => Some(CallStatus::Failed),
            2 => Some(CallStatus::NoSuchFunction),
            3 => Some(CallStatus::Panicked),
            _ => None,
        }
    }
}
