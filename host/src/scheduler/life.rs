//! Where a green thread is in its life ([`Life`]), and what a kill leaves
//! it while it unwinds.

use crate::abi::Ending;

/// How many blocking calls a killed green thread may make (each reporting
/// the kill at once) before it is taken to ignore the kill and ended hard.
/// Cleanup rarely blocks; a loop that retries on every error does, and this
/// bounds it.
pub(crate) const UNWIND_CALLS: u32 = 16;

/// A killed green thread made more than [`UNWIND_CALLS`] blocking calls
/// after its kill: it ignores it, and the hub ends it hard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KeptBlocking;

/// A killed green thread on its way out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Unwinding {
    /// The kill's error (a guest pointer, 0 for none).
    pub(super) error: u32,
    /// How many more blocking calls it may make (see [`UNWIND_CALLS`]).
    pub(super) calls_left: u32,
    /// It has not reached a blocking call since it was killed while
    /// preemption had paused it, or since a preemption found it unwinding:
    /// a spinner, perhaps, that never will. Still running at its next
    /// preemption, it is ended there.
    pub(super) spinning: bool,
}

/// Where a green thread is in its life; what it waits for meanwhile is its
/// [`State`](super::State). Main stays `Unstarted` (its start is `_start`, its end the
/// guest's, and a kill of it ends the guest).
///
/// ```text
///   Unstarted ──first run──► Running ──killed in a hub wait──► Unwinding
///       │                      │  ▲ paused by preemption          │
///       │                      └──┘                               │ its call returns
///       │ killed, cancelled       │ trapped, refused, killed hard │
///       ▼                         ▼                               ▼
///   Ending ◄──────────────────────┴───────────────────────────────┘
///   (its next run is `wasmlet-finish`: the result, the links; then it goes)
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Life {
    /// Spawned; its task has not begun (`cancel` still stops it).
    Unstarted,
    /// Running its task. `paused`: its last suspension was preemption's,
    /// not a hub wait, so a kill cannot be reported where it is.
    Running { paused: bool },
    /// Killed while it ran its task: returning through its frames, every
    /// blocking call reporting the kill.
    Unwinding(Unwinding),
    /// Killed, cancelled, trapped or refused: its next run (or the one under
    /// way) is its ending, `how` with the kill's `error`; it can no longer be
    /// killed. `started`: whether its task had begun. `unwinding`: set if it
    /// was unwinding from a kill, whose waits its ending still answers at
    /// once.
    Ending {
        how: Ending,
        error: u32,
        started: bool,
        unwinding: Option<Unwinding>,
    },
}

impl Life {
    /// Whether its task has begun (or it ended after it had).
    pub(super) fn started(&self) -> bool {
        match *self {
            Life::Unstarted => false,
            Life::Running { .. } | Life::Unwinding(_) => true,
            Life::Ending { started, .. } => started,
        }
    }

    /// How it ends and the kill's error, once its ending is set.
    pub(super) fn ending(&self) -> Option<(Ending, u32)> {
        match *self {
            Life::Ending { how, error, .. } => Some((how, error)),
            _ => None,
        }
    }

    /// The kill it is unwinding from, if it was killed while it ran.
    pub(super) fn unwinding(&mut self) -> Option<&mut Unwinding> {
        match self {
            Life::Unwinding(u)
            | Life::Ending {
                unwinding: Some(u), ..
            } => Some(u),
            _ => None,
        }
    }

    pub(super) fn is_unwinding(&self) -> bool {
        matches!(
            self,
            Life::Unwinding(_)
                | Life::Ending {
                    unwinding: Some(_),
                    ..
                }
        )
    }

    /// Whether a kill can still reach it: not unwinding, not ending.
    pub(super) fn killable(&self) -> bool {
        matches!(self, Life::Unstarted | Life::Running { .. })
    }

    /// Its ending set to `how` (with the kill's `error`), keeping what it
    /// was unwinding from.
    pub(super) fn end(&mut self, how: Ending, error: u32) {
        let started = self.started();
        let unwinding = self.unwinding().copied();
        *self = Life::Ending {
            how,
            error,
            started,
            unwinding,
        };
    }
}
