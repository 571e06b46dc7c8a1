//! Thread-local destructors for green threads.
//!
//! std drops a thread's `thread_local!` values from a pthread key destructor
//! (one key whose destructor runs std's per-thread list), which wasi-libc
//! runs when a pthread exits. A green thread is no pthread: its `struct
//! pthread` (in its TLS block) starts with no key table at all, so std's
//! `pthread_setspecific` would write through a null table into low memory,
//! and nothing would ever run the destructors.
//!
//! So each green thread gets a key table of its own (in its TLS block), and
//! its end runs wasi-libc's key destructors, as `pthread_exit` does. The
//! table's place in `struct pthread` is not public: it is found once, on the
//! main thread, as the word that `pthread_key_create` sets to wasi-libc's
//! `__pthread_tsd_main` (the main thread's table). If it cannot be found
//! (a wasi-libc that changed), green threads keep leaking their
//! thread-locals, as before, and never write through a null table.

use std::cell::UnsafeCell;
use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};

/// wasi-libc's `PTHREAD_KEYS_MAX`.
const KEYS_MAX: usize = 128;

/// Words of `struct pthread` searched for the key table's pointer.
const SEARCHED_WORDS: usize = 64;

/// The key table's word index in `struct pthread`; `UNKNOWN` until found,
/// `NONE` if it could not be.
static TABLE_WORD: AtomicUsize = AtomicUsize::new(UNKNOWN);
const UNKNOWN: usize = usize::MAX;
const NONE: usize = usize::MAX - 1;

thread_local! {
    /// This green thread's key values (wasi-libc's `tsd`).
    static TABLE: UnsafeCell<[*mut c_void; KEYS_MAX]> =
        const { UnsafeCell::new([std::ptr::null_mut(); KEYS_MAX]) };
}

extern "C" {
    fn pthread_self() -> *mut usize;
    fn pthread_key_create(key: *mut u32, dtor: Option<unsafe extern "C" fn(*mut c_void)>) -> i32;
    fn pthread_key_delete(key: u32) -> i32;
    /// Runs the key destructors of the calling thread (what `pthread_exit`
    /// does); hidden in wasi-libc, but linked statically with it.
    fn __pthread_tsd_run_dtors();
    static __pthread_tsd_main: [*mut c_void; KEYS_MAX];
}

/// Finds where `struct pthread` keeps its key table. Call on the main
/// thread before the first green thread starts.
pub(crate) fn locate_table() {
    if TABLE_WORD.load(Ordering::Relaxed) != UNKNOWN {
        return;
    }
    // SAFETY: plain libc calls on the main thread; creating a key points the
    // main thread's table at `__pthread_tsd_main` if it was not yet.
    let found = unsafe {
        let mut key = 0;
        if pthread_key_create(&mut key, None) == 0 {
            pthread_key_delete(key);
        }
        let main_table = std::ptr::addr_of!(__pthread_tsd_main) as usize;
        let me = pthread_self();
        let mut hits = (0..SEARCHED_WORDS).filter(|&i| me.add(i).read() == main_table);
        match (hits.next(), hits.next()) {
            (Some(word), None) => word,
            _ => NONE,
        }
    };
    TABLE_WORD.store(found, Ordering::Relaxed);
}

/// Gives the calling green thread its own key table. Call right after
/// `__wasi_init_tp`.
pub(crate) fn give_table() {
    let word = TABLE_WORD.load(Ordering::Relaxed);
    if word >= NONE {
        return;
    }
    let table = TABLE.with(|t| t.get()) as usize;
    // SAFETY: `word` is the key table's place in this thread's `struct
    // pthread` (found by `locate_table`, within the struct), and the table
    // is this green thread's own TLS, which outlives its use.
    unsafe { pthread_self().add(word).write(table) };
}

/// Runs the calling green thread's key destructors, and with them std's
/// thread-local destructors. Call when the green thread ends, once no frame
/// of it borrows a thread-local.
pub(crate) fn run_destructors() {
    if TABLE_WORD.load(Ordering::Relaxed) >= NONE {
        return;
    }
    // SAFETY: the thread has its own key table (`give_table`), and no code
    // of it holds a reference into its thread-locals any more.
    unsafe { __pthread_tsd_run_dtors() };
}
