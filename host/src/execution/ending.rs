//! What the end of a green thread's call means: for the thread, and for its
//! guest. A pure function of how the call ended and a few facts about the
//! thread and its guest, so each rule is unit-tested without wasm.

use crate::abi::Ending;
use crate::execution::lifecycle::CallEnd;
use crate::guest::{GuestError, GuestExit};

/// What is known of the thread whose call ended, and of its guest.
#[derive(Clone, Debug, Default)]
pub(crate) struct Facts {
    /// It is the guest's main green thread.
    pub main: bool,
    /// It is a `std::thread` (started through `wasi::thread-spawn`).
    pub std_thread: bool,
    /// The guest is a plugin (it lives on when its main returns).
    pub plugin: bool,
    /// The guest's captured output is full (`max_output`, in bytes).
    pub output_full: Option<usize>,
    /// The guest's memory is at its limit (`max_memory`, in bytes).
    pub memory_full: Option<u64>,
    /// How messages name the thread.
    pub name: String,
}

/// What follows from a call's end.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// A plugin's main returned: it has set the plugin up, and its calls
    /// come from the host.
    PluginReady,
    /// The guest ends so.
    GuestEnds(GuestExit),
    /// The thread ends (its links run, its joiners wake); `failure` says how
    /// it failed, if it did.
    ThreadEnds {
        /// How it failed, whether it trapped (or a hub function refused it),
        /// and the error.
        failure: Option<(Ending, bool, wasmtime::Error)>,
    },
}

/// What the end `end` of the call of a thread with `facts` means.
pub(crate) fn judge(end: CallEnd, facts: &Facts) -> Verdict {
    if facts.main && facts.plugin && matches!(end, CallEnd::Returned) {
        return Verdict::PluginReady;
    }
    if facts.std_thread {
        if let CallEnd::Failed { error, .. } = &end {
            // As a trap in any thread of a wasi-threads program (a Rust
            // panic aborts the process there too): the guest ends.
            return Verdict::GuestEnds(GuestExit::failed(
                134,
                GuestError::StdThreadTrap(format!(
                    "{}, a std::thread, trapped (which ends every thread of the guest, as in \
                     any wasi-threads program): {error:?}",
                    facts.name
                )),
            ));
        }
    }
    let limit = |what: String| GuestExit::failed(137, GuestError::LimitExceeded(what));
    let memory_limit = |bytes: u64| limit(format!("linear memory limit of {} MiB", bytes >> 20));
    if facts.main {
        return Verdict::GuestEnds(match end {
            CallEnd::Returned => GuestExit::code(0),
            CallEnd::Exit(code) => GuestExit::code(code),
            CallEnd::Failed { .. } if facts.output_full.is_some() => {
                let bytes = facts.output_full.unwrap_or(0);
                limit(format!(
                    "captured output limit of {} MiB per stream",
                    bytes >> 20
                ))
            }
            CallEnd::Failed { .. } if facts.memory_full.is_some() => {
                memory_limit(facts.memory_full.unwrap_or(0))
            }
            CallEnd::Failed { how, error, .. } => {
                let what = if how == Ending::TrapShadowStackOverflow {
                    "shadow stack overflow (the main green thread's stack is the module's own: \
                     link the guest with a larger `-z stack-size`): "
                } else {
                    ""
                };
                GuestExit::failed(134, GuestError::Trap(format!("{what}{error:?}")))
            }
        });
    }
    match end {
        CallEnd::Returned => Verdict::ThreadEnds { failure: None },
        CallEnd::Exit(code) => Verdict::GuestEnds(GuestExit::code(code)),
        // A plugin whose memory is full stays full (a failed green thread's
        // allocations are never freed): it ends, and its host can start it
        // afresh.
        CallEnd::Failed { .. } if facts.plugin && facts.memory_full.is_some() => {
            Verdict::GuestEnds(memory_limit(facts.memory_full.unwrap_or(0)))
        }
        CallEnd::Failed { how, trap, error } => Verdict::ThreadEnds {
            failure: Some((how, trap, error)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed() -> CallEnd {
        CallEnd::Failed {
            how: Ending::TrapUnreachable,
            trap: true,
            error: wasmtime::format_err!("unreachable"),
        }
    }

    fn exit_of(verdict: Verdict) -> (i32, String) {
        match verdict {
            Verdict::GuestEnds(exit) => (
                exit.code,
                exit.error.map(|e| e.to_string()).unwrap_or_default(),
            ),
            other => panic!("the guest goes on: {other:?}"),
        }
    }

    #[test]
    fn main_returning_ends_the_guest_well_unless_it_is_a_plugin() {
        let main = Facts {
            main: true,
            ..Facts::default()
        };
        assert_eq!(exit_of(judge(CallEnd::Returned, &main)).0, 0);
        assert_eq!(exit_of(judge(CallEnd::Exit(3), &main)).0, 3);
        let plugin = Facts {
            plugin: true,
            ..main
        };
        assert!(matches!(
            judge(CallEnd::Returned, &plugin),
            Verdict::PluginReady
        ));
    }

    #[test]
    fn a_failing_main_ends_the_guest_naming_the_limit_it_hit_or_the_trap() {
        let main = Facts {
            main: true,
            ..Facts::default()
        };
        let (code, error) = exit_of(judge(failed(), &main));
        assert_eq!(code, 134);
        assert!(error.contains("unreachable"), "{error}");
        let full = Facts {
            memory_full: Some(64 << 20),
            ..main.clone()
        };
        let (code, error) = exit_of(judge(failed(), &full));
        assert_eq!(
            (code, error.as_str()),
            (137, "the guest exceeded its linear memory limit of 64 MiB")
        );
        let output = Facts {
            output_full: Some(1 << 20),
            memory_full: Some(64 << 20),
            ..main
        };
        let (_, error) = exit_of(judge(failed(), &output));
        assert!(error.contains("captured output limit of 1 MiB"), "{error}");
    }

    #[test]
    fn a_failing_std_thread_ends_its_guest_and_a_green_thread_only_itself() {
        let std_thread = Facts {
            std_thread: true,
            name: "green thread #2".into(),
            ..Facts::default()
        };
        let (code, error) = exit_of(judge(failed(), &std_thread));
        assert_eq!(code, 134);
        assert!(
            error.contains("green thread #2, a std::thread, trapped"),
            "{error}"
        );
        let green = Facts::default();
        assert!(matches!(
            judge(failed(), &green),
            Verdict::ThreadEnds {
                failure: Some((Ending::TrapUnreachable, true, _))
            }
        ));
        assert!(matches!(
            judge(CallEnd::Returned, &green),
            Verdict::ThreadEnds { failure: None }
        ));
        assert_eq!(
            exit_of(judge(CallEnd::Exit(5), &green)).0,
            5,
            "exit from any thread"
        );
    }

    #[test]
    fn a_plugin_whose_memory_is_full_ends_when_a_call_fails() {
        let plugin = Facts {
            plugin: true,
            memory_full: Some(16 << 20),
            ..Facts::default()
        };
        assert_eq!(exit_of(judge(failed(), &plugin)).0, 137);
        let program = Facts {
            memory_full: Some(16 << 20),
            ..Facts::default()
        };
        assert!(matches!(
            judge(failed(), &program),
            Verdict::ThreadEnds { failure: Some(_) }
        ));
    }
}
