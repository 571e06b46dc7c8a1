//! Calls the hub's imports directly with ids and pointers that make no sense.
//! The host must answer or trap only the offending green thread.
use std::time::Duration;

#[link(wasm_import_module = "wasmlet:runtime/hub@0.1.0")]
extern "C" {
    #[link_name = "kill"]
    fn raw_kill(target: u64, error: u32) -> u32;
    #[link_name = "cancel"]
    fn raw_cancel(target: u64, error: u32) -> u32;
    #[link_name = "started"]
    fn raw_started(target: u64) -> u32;
    #[link_name = "join"]
    fn raw_join(target: u64, timeout_ns: u64) -> u32;
    #[link_name = "link"]
    fn raw_link(target: u64, callback: u32) -> u64;
    #[link_name = "unlink"]
    fn raw_unlink(target: u64, link: u64) -> u32;
    #[link_name = "unpark"]
    fn raw_unpark(target: u64) -> u32;
    #[link_name = "spawn"]
    fn raw_spawn(task: u32, stack_size: u32, delay_ns: u64, flags: u32) -> u64;
    #[link_name = "next-link"]
    fn raw_next_link() -> u32;
    #[link_name = "park"]
    fn raw_park(timeout_ns: u64) -> u32;
    #[link_name = "wait32"]
    fn raw_wait32(address: u32, expected: u32, timeout_ns: i64, offset: u32) -> u32;
    #[link_name = "wait64"]
    fn raw_wait64(address: u32, expected: u64, timeout_ns: i64, offset: u32) -> u32;
    #[link_name = "notify"]
    fn raw_notify(address: u32, count: u32, offset: u32) -> u32;
    #[link_name = "try-spawn"]
    fn raw_try_spawn(task: u32, stack_size: u32, delay_ns: u64, flags: u32) -> u64;
    #[link_name = "last-spawn-refusal"]
    fn raw_last_spawn_refusal() -> u32;
    #[link_name = "call-name-len"]
    fn raw_call_name_len() -> u32;
    #[link_name = "call-input-len"]
    fn raw_call_input_len() -> u32;
    #[link_name = "call-begin"]
    fn raw_call_begin(task: u32, name: u32, input: u32);
    #[link_name = "call-return"]
    fn raw_call_return(status: u32, output: u32, len: u32);
}

#[link(wasm_import_module = "wasmlet:runtime/net@0.1.0")]
extern "C" {
    #[link_name = "tcp-listen"]
    fn net_listen(addr: u32, len: u32, backlog: u32) -> i64;
    #[link_name = "read"]
    fn net_read(socket: u32, buf: u32, len: u32, timeout_ns: u64) -> i64;
    #[link_name = "close"]
    fn net_close(socket: u32) -> i64;
    #[link_name = "address"]
    fn net_address(socket: u32, peer: u32, buf: u32, len: u32) -> i64;
    #[link_name = "resolve"]
    fn net_resolve(name: u32, len: u32, buf: u32, buf_len: u32) -> i64;
}

#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    fn poll_oneoff(subscriptions: u32, events: u32, n: u32, nevents: u32) -> u32;
    fn fd_read(fd: u32, iovs: u32, iovs_len: u32, nread: u32) -> u32;
    fn fd_write(fd: u32, iovs: u32, iovs_len: u32, nwritten: u32) -> u32;
    #[allow(clippy::too_many_arguments)]
    fn path_open(
        dir: u32,
        dirflags: u32,
        path: u32,
        path_len: u32,
        oflags: u32,
        rights: u64,
        inheriting: u64,
        fdflags: u32,
        opened: u32,
    ) -> u32;
}

fn main() {
    wasmlet::hub_exceptions(false);
    unsafe {
        println!("kill unknown: {}", raw_kill(0xdead_beef_0000_0007, 0));
        println!("kill 0: {}", raw_kill(0, 0xffff_fff0));
        println!("cancel unknown: {}", raw_cancel(u64::MAX, 0xffff_fff0));
        println!(
            "started unknown: {}, 0: {}",
            raw_started(u64::MAX),
            raw_started(0)
        );
        println!("join unknown: {}", raw_join(12345, u64::MAX));
        println!("link unknown: {}", raw_link(999, 0xffff_ffff));
        println!("unlink unknown: {}", raw_unlink(999, 5));
        println!("unpark unknown: {}", raw_unpark(424242));
        println!("next-link with none: {}", raw_next_link());
        println!("park, zero timeout: {}", raw_park(0));
    }
    // A task pointer into nowhere: that green thread traps (twice: run and
    // ending); main goes on.
    let id = unsafe { raw_spawn(0xffff_fff0, 0, 0, 0) };
    println!("spawned garbage task: {}", id != 0);
    let _ = wasmlet::sleep(Duration::from_millis(1));
    unsafe { println!("join it: {}", raw_join(id, u64::MAX)) };
    // An absurd stack size traps the green thread that asks, not the guest.
    let asker = wasmlet::spawn(|| unsafe { raw_spawn(0, u32::MAX, 0, 0) });
    println!("huge stack: {}", asker.wait().unwrap_err());
    // Futex waits and notifies, as the loader's rewrite calls them.
    let word = Box::leak(Box::new(7u64));
    let at = word as *mut u64 as u32;
    unsafe {
        println!("wait32, other value: {}", raw_wait32(at, 8, -1, 0));
        println!("wait32, zero timeout: {}", raw_wait32(at, 7, 0, 0));
        println!("wait64, 1 ms: {}", raw_wait64(at, 7, 1_000_000, 0));
        println!("notify, nobody waits: {}", raw_notify(at, u32::MAX, 0));
    }
    let traps = [
        wasmlet::spawn(move || unsafe { raw_wait32(at + 1, 0, -1, 0) }),
        wasmlet::spawn(move || unsafe { raw_wait64(at, 0, -1, 4) }),
        wasmlet::spawn(|| unsafe { raw_wait32(0xffff_fffc, 0, -1, 8) }),
        wasmlet::spawn(|| unsafe { raw_notify(0xffff_fff0, 1, 0x100) }),
    ];
    for t in traps {
        println!("bad futex address: {}", t.wait().unwrap_err());
    }
    // The net interface: denied (no capability), bad handles, lengths
    // past any address, and wild pointers, which trap their caller alone.
    let addr = "127.0.0.1:80";
    unsafe {
        println!(
            "net: listen denied {}, too long {}, read bad handle {}, close 0 {}, address bad handle {}",
            net_listen(addr.as_ptr() as u32, addr.len() as u32, 1),
            net_listen(addr.as_ptr() as u32, u32::MAX, 1),
            net_read(77, 0xffff_fff0, u32::MAX, u64::MAX),
            net_close(0),
            net_address(u32::MAX, 1, 0xffff_fff0, 64),
        );
    }
    let net_traps = [
        wasmlet::spawn(|| unsafe { net_listen(0xffff_fff0, 200, 1) }),
        wasmlet::spawn(|| unsafe { net_resolve(0xffff_ff00, 255, 0, 0) }),
    ];
    for t in net_traps {
        println!("net wild pointer: {}", t.wait().unwrap_err());
    }
    // WASI poll_oneoff, answered by the hub: wild pointers and counts.
    let mut nevents = 0u32;
    let n_at = &mut nevents as *mut u32 as u32;
    unsafe {
        println!("poll, no subscriptions: {}", poll_oneoff(at, at, 0, n_at));
        println!(
            "poll, a billion: {}",
            poll_oneoff(at, at, 1_000_000_000, n_at)
        );
        println!(
            "poll, subscriptions out of memory: {}",
            poll_oneoff(0xffff_fff0, at, 1, n_at)
        );
        let zeros = Box::leak(Box::new([0u8; 48])) as *mut [u8; 48] as u32;
        println!(
            "poll, events out of memory: {}",
            poll_oneoff(zeros, 0xffff_fff0, 1, n_at)
        );
    }
    // try-spawn refuses instead of trapping.
    unsafe {
        let id = raw_try_spawn(0, u32::MAX, 0, 0);
        println!(
            "try-spawn, huge stack: {id}, refusal {}",
            raw_last_spawn_refusal()
        );
    }
    // Reads and writes of the standard streams (the host's own, when run by
    // the CLI) and opens, with buffers and counts out of memory.
    // An errno or a trap of the caller alike (WASI traps where the hub
    // answers EFAULT).
    let wild_iov = Box::leak(Box::new([0xffff_fff0u32, 64])) as *mut [u32; 2] as u32;
    let calls: [fn(u32, u32, u32) -> u32; 6] = [
        |_, n_at, _| unsafe { fd_write(1, 0xffff_fff0, 1, n_at) },
        |_, n_at, iov| unsafe { fd_write(1, iov, 1, n_at) },
        |at, n_at, _| unsafe { fd_write(2, at, 1_000_000_000, n_at) },
        |_, _, iov| unsafe { fd_write(1, iov, 1, 0xffff_fff0) },
        |_, n_at, _| unsafe { fd_read(0, 0xffff_fff0, 1, n_at) },
        |at, n_at, _| unsafe { fd_read(0, at, 1_000_000_000, n_at) },
    ];
    let refused = calls.map(|call| {
        let gt = wasmlet::spawn(move || call(at, n_at, wild_iov));
        gt.wait().map_or(true, |errno| errno != 0)
    });
    println!("stdio, wild buffers refused: {refused:?}");
    // WASI itself traps the caller on a path out of memory.
    let opener =
        wasmlet::spawn(move || unsafe { path_open(3, 0, 0xffff_fff0, 100, 0, 0, 0, 0, n_at) });
    println!("open, wild path: {}", opener.wait().unwrap_err());
    // The call functions, from green threads that run no host call.
    let outside: [fn(); 4] = [
        || unsafe {
            raw_call_name_len();
        },
        || unsafe {
            raw_call_input_len();
        },
        || unsafe { raw_call_begin(0, 0xffff_fff0, 0xffff_fff0) },
        || unsafe { raw_call_return(9, 0xffff_fff0, u32::MAX) },
    ];
    let trapped = outside.map(|f| wasmlet::spawn(f).wait().is_err());
    println!("call functions outside a call trap: {trapped:?}");
    let fine = wasmlet::spawn(|| "still fine");
    println!("{}", fine.wait().unwrap());
}
