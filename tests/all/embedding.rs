//! The embedding API: several guests on one hub, isolated from each other, and
//! a host that survives anything a guest passes to its functions.

use crate::support::{ended_while_other_ran, finished, guest, options, run, runtime};

use wasmlet_host::{Hub, Program};

#[test]
fn two_guests_share_one_hub() {
    let runtime = runtime();
    let hello = Program::from_file(runtime.engine(), guest("spawn_order")).unwrap();
    let tls = Program::from_file(runtime.engine(), guest("tls_heap")).unwrap();
    let mut hub = Hub::new(&runtime);
    let a = hub.add_guest(&hello, options(&[])).unwrap();
    let b = hub.add_guest(&tls, options(&[])).unwrap();
    let c = hub.add_guest(&hello, options(&[])).unwrap();
    hub.run();
    let (a, b, c) = (finished(&hub, a), finished(&hub, b), finished(&hub, c));
    assert_eq!(a.code, 0);
    assert_eq!(b.code, 0);
    assert_eq!(a.stdout, c.stdout);
    assert!(a.stdout.starts_with("spawned all, run 0"), "{}", a.stdout);
    assert!(
        b.stdout.contains("shared heap saw: [1, 2, 3, 4]"),
        "{}",
        b.stdout
    );
}

#[test]
fn a_failing_guest_does_not_hurt_its_neighbours() {
    let runtime = runtime();
    let deadlock = Program::from_file(runtime.engine(), guest("deadlock")).unwrap();
    let exits = Program::from_file(runtime.engine(), guest("exits")).unwrap();
    let timers = Program::from_file(runtime.engine(), guest("timers")).unwrap();
    let mut hub = Hub::new(&runtime);
    let d = hub.add_guest(&deadlock, options(&[])).unwrap();
    let p = hub.add_guest(&exits, options(&["panic-main"])).unwrap();
    let t = hub.add_guest(&timers, options(&[])).unwrap();
    hub.run();
    assert!(finished(&hub, d).error.unwrap().starts_with("deadlock"));
    assert_eq!(finished(&hub, p).code, 134);
    let t = finished(&hub, t);
    assert_eq!(t.code, 0, "{}", t.stderr);
    assert!(
        t.stdout.contains("sleep order: [0, 10, 20, 30]"),
        "{}",
        t.stdout
    );
}

#[test]
fn a_guest_that_never_yields_does_not_starve_another() {
    let runtime = runtime();
    let dir = std::env::temp_dir().join(format!("wasmlet-preempt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let marker = dir.join("writer-done");
    std::fs::remove_file(&marker).ok();
    let with_dir = |args: &[&str]| {
        let mut o = options(args);
        o.dirs.push((dir.clone(), "/shared".into()));
        o
    };
    let spinner = Program::from_file(runtime.engine(), guest("spinner")).unwrap();
    let writer = Program::from_file(runtime.engine(), guest("writer")).unwrap();
    let mut hub = Hub::new(&runtime);
    // The spinner runs first and spins 1.5 s without a yield; the writer needs
    // a few ms. Preemption lets the writer finish while the spinner spins.
    let s = hub
        .add_guest(&spinner, with_dir(&["1500", "/shared/writer-done"]))
        .unwrap();
    let w = hub
        .add_guest(&writer, with_dir(&["/shared/writer-done"]))
        .unwrap();
    hub.run();
    assert_eq!(finished(&hub, w).stdout, "writer done: 3\n");
    assert_eq!(
        finished(&hub, s).stdout,
        "spinner saw the other guest finish: true\n"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// What the bogus guest prints, whether its standard streams are captured
/// or the host's own.
const BOGUS_OUTPUT: &[&str] = &[
    "kill unknown: 2",
    "kill 0: 2",
    "cancel unknown: 2",
    "started unknown: 0, 0: 0",
    "join unknown: 0",
    "link unknown: 0",
    "unlink unknown: 0",
    "unpark unknown: 0",
    "next-link with none: 0",
    "park, zero timeout: 0",
    "spawned garbage task: true",
    "join it: 0",
    "huge stack: green thread trapped: wasm trap",
    "wait32, other value: 1",
    "wait32, zero timeout: 2",
    "wait64, 1 ms: 2",
    "notify, nobody waits: 0",
    "bad futex address: green thread trapped: wasm trap",
    "bad futex address: green thread trapped: wasm trap",
    "bad futex address: green thread trapped: out of bounds memory access",
    "bad futex address: green thread trapped: out of bounds memory access",
    "net: listen denied -1, too long -3, read bad handle -2, close 0 -2, address bad handle -2",
    "net wild pointer: green thread trapped: wasm trap",
    "net wild pointer: green thread trapped: wasm trap",
    "poll, no subscriptions: 28",
    "poll, a billion: 28",
    "poll, subscriptions out of memory: 21",
    "poll, events out of memory: 21",
    "try-spawn, huge stack: 0, refusal 3",
    "stdio, wild buffers refused: [true, true, true, true, true, true]",
    "open, wild path: green thread trapped: wasm trap",
    "call functions outside a call trap: [true, true, true, true]",
    "still fine",
];

#[test]
fn bogus_ids_and_pointers_only_hurt_the_caller() {
    let r = run("bogus", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.lines().collect::<Vec<_>>(), BOGUS_OUTPUT);
    // Through the CLI, the standard streams are the host's.
    let out = crate::support::cli(&guest("bogus"), &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.lines().collect::<Vec<_>>(), BOGUS_OUTPUT);
}

/// `bytes` with one more mutable global, as C or Zig code would have.
fn with_extra_mutable_global(bytes: &[u8]) -> Vec<u8> {
    use wasm_encoder::reencode::{utils, Reencode};
    struct AddGlobal;
    impl Reencode for AddGlobal {
        type Error = std::convert::Infallible;
        fn parse_global_section(
            &mut self,
            globals: &mut wasm_encoder::GlobalSection,
            section: wasmparser::GlobalSectionReader<'_>,
        ) -> Result<(), wasm_encoder::reencode::Error> {
            utils::parse_global_section(self, globals, section)?;
            let ty = wasm_encoder::GlobalType {
                val_type: wasm_encoder::ValType::I32,
                mutable: true,
                shared: false,
            };
            globals.global(ty, &wasm_encoder::ConstExpr::i32_const(7));
            Ok(())
        }
    }
    let mut module = wasm_encoder::Module::new();
    AddGlobal
        .parse_core_module(&mut module, wasmparser::Parser::new(0), bytes)
        .unwrap();
    module.finish()
}

#[test]
fn instances_are_reused_only_when_every_mutable_global_is_set_per_green_thread() {
    let runtime = runtime();
    let bytes = std::fs::read(guest("spawn_order")).unwrap();
    let rust = Program::from_bytes(runtime.engine(), &bytes).unwrap();
    assert!(rust.reuses_instances());
    let other = Program::from_bytes(runtime.engine(), &with_extra_mutable_global(&bytes)).unwrap();
    assert!(!other.reuses_instances());
    // It still runs, on a fresh instance per green thread.
    let mut hub = Hub::new(&runtime);
    let id = hub.add_guest(&other, options(&[])).unwrap();
    hub.run();
    let r = finished(&hub, id);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.starts_with("spawned all, run 0"), "{}", r.stdout);
}

/// A module whose start function (run while its main instance is made)
/// spins for `seconds` of the monotonic clock.
fn spinning_start_function(seconds: u64) -> Vec<u8> {
    use wasm_encoder::*;
    let mut module = Module::new();
    let mut types = TypeSection::new();
    types
        .ty()
        .function([ValType::I32, ValType::I64, ValType::I32], [ValType::I32]);
    types.ty().function([], []);
    module.section(&types);
    let mut imports = ImportSection::new();
    imports.import(
        "wasi_snapshot_preview1",
        "clock_time_get",
        EntityType::Function(0),
    );
    let memory = MemoryType {
        minimum: 1,
        maximum: Some(1),
        memory64: false,
        shared: true,
        page_size_log2: None,
    };
    imports.import("env", "memory", EntityType::Memory(memory));
    module.section(&imports);
    let mut functions = FunctionSection::new();
    functions.function(1);
    functions.function(1);
    module.section(&functions);
    let mut exports = ExportSection::new();
    exports.export("_start", ExportKind::Func, 2);
    module.section(&exports);
    module.section(&StartSection { function_index: 1 });
    let mut code = CodeSection::new();
    let mut spin = Function::new([(1, ValType::I64)]);
    let now = |f: &mut Function| {
        f.instruction(&Instruction::I32Const(1))
            .instruction(&Instruction::I64Const(0))
            .instruction(&Instruction::I32Const(0))
            .instruction(&Instruction::Call(0))
            .instruction(&Instruction::Drop)
            .instruction(&Instruction::I32Const(0))
            .instruction(&Instruction::I64Load(MemArg {
                offset: 0,
                align: 3,
                memory_index: 0,
            }));
    };
    now(&mut spin);
    spin.instruction(&Instruction::I64Const((seconds * 1_000_000_000) as i64))
        .instruction(&Instruction::I64Add)
        .instruction(&Instruction::LocalSet(0))
        .instruction(&Instruction::Loop(BlockType::Empty));
    now(&mut spin);
    spin.instruction(&Instruction::LocalGet(0))
        .instruction(&Instruction::I64LtU)
        .instruction(&Instruction::BrIf(0))
        .instruction(&Instruction::End)
        .instruction(&Instruction::End);
    code.function(&spin);
    let mut start = Function::new([]);
    start.instruction(&Instruction::End);
    code.function(&start);
    module.section(&code);
    module.finish()
}

#[test]
fn a_start_function_that_spins_is_preempted_like_any_code() {
    let runtime = runtime();
    // It would spin for an hour; unpreempted, the neighbour would not end
    // before it.
    let spinner = Program::from_bytes(runtime.engine(), &spinning_start_function(3600)).unwrap();
    let neighbour = Program::from_file(runtime.engine(), guest("lateness")).unwrap();
    let mut hub = Hub::new(&runtime);
    let a = hub.add_guest(&spinner, options(&[])).unwrap();
    let b = hub.add_guest(&neighbour, options(&["20"])).unwrap();
    let watcher = ended_while_other_ran(hub.handle(), b, a);
    hub.run();
    assert!(
        watcher.join().unwrap(),
        "the neighbour ended only after the spinner"
    );
    let (a, b) = (finished(&hub, a), finished(&hub, b));
    assert_eq!(a.code, 137, "killed by the watcher: {:?}", a.error);
    assert_eq!(b.code, 0, "{}", b.stderr);
    println!(
        "beside a spinning start function, the neighbour was at most {} ms late",
        b.stdout.trim()
    );
}

#[test]
fn another_thread_can_kill_a_spinning_guest_through_a_handle() {
    let runtime = runtime();
    let spinner = Program::from_file(runtime.engine(), guest("spinner")).unwrap();
    let fine = Program::from_file(runtime.engine(), guest("spawn_order")).unwrap();
    let mut hub = Hub::new(&runtime);
    // It would spin for 60 s without a yield.
    let s = hub
        .add_guest(&spinner, options(&["60000", "/nonexistent"]))
        .unwrap();
    let f = hub.add_guest(&fine, options(&[])).unwrap();
    fn send_and_sync<T: Send + Sync>(t: T) -> T {
        t
    }
    let handle = send_and_sync(hub.handle());
    let killer = std::thread::spawn(move || {
        // Once it has spun (its CPU time shows it running).
        let wait = std::time::Duration::from_secs(300);
        while handle.usage(s, wait).is_some_and(|u| u.cpu_time.is_zero()) {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        handle.kill_guest(s, "runaway plugin");
        // A second kill, of a guest that has ended or is ending, does nothing.
        handle.kill_guest(s, "again");
    });
    hub.run();
    killer.join().unwrap();
    let (s, f) = (finished(&hub, s), finished(&hub, f));
    assert_eq!(s.code, 137);
    assert_eq!(
        s.error.as_deref(),
        Some("killed by the host: runaway plugin")
    );
    assert_eq!(s.stdout, "", "it never got to the end of its spin");
    assert_eq!(f.code, 0);
    assert!(f.stdout.starts_with("spawned all, run 0"), "{}", f.stdout);
}

#[test]
fn a_guest_killed_before_the_hub_runs_never_runs() {
    let runtime = runtime();
    let program = Program::from_file(runtime.engine(), guest("spawn_order")).unwrap();
    let mut hub = Hub::new(&runtime);
    let a = hub.add_guest(&program, options(&[])).unwrap();
    let b = hub.add_guest(&program, options(&[])).unwrap();
    let usage = hub.usage(a).expect("live");
    assert_eq!(usage.green_threads, 1);
    assert!(usage.memory >= 64 * 1024, "{usage:?}");
    hub.kill_guest(a, "not wanted");
    assert_eq!(hub.usage(a), None, "an ended guest uses nothing");
    hub.run();
    let (a, b) = (finished(&hub, a), finished(&hub, b));
    assert_eq!((a.code, a.stdout.as_str()), (137, ""));
    assert_eq!(b.code, 0);
}

#[test]
fn an_embedded_guest_reads_no_stdin_unless_its_options_say_so() {
    // The embedder is this test, run again as a child process whose stdin
    // and stdout the parent holds (the guest's output passes through).
    if let Ok(mode) = std::env::var("WASMLET_STDIN_PROBE") {
        let runtime = runtime();
        let program = Program::from_file(runtime.engine(), guest("environment")).unwrap();
        let mut hub = Hub::new(&runtime);
        let options = wasmlet_host::GuestOptions {
            args: vec!["guest".into()],
            inherit_stdin: mode == "inherit",
            ..Default::default()
        };
        hub.add_guest(&program, options).unwrap();
        hub.run();
        return;
    }
    for (mode, expected) in [
        ("default", "stdin: Ok(\"\")"),
        ("inherit", "stdin: Ok(\"from the embedder's input\")"),
    ] {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                // This test's own path, wherever the module moves.
                &format!(
                    "{}::an_embedded_guest_reads_no_stdin_unless_its_options_say_so",
                    module_path!().split_once("::").unwrap().1
                ),
            ])
            .arg("--nocapture")
            .env("WASMLET_STDIN_PROBE", mode)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"from the embedder's input\n").unwrap();
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains(expected), "{mode}: {stdout}");
    }
}

#[test]
fn a_guest_past_its_own_green_thread_limit_is_refused_while_its_neighbour_spawns_on() {
    let runtime = runtime();
    let waves = Program::from_file(runtime.engine(), guest("waves")).unwrap();
    let mut hub = Hub::new(&runtime);
    let mut capped = options(&["200", "100"]);
    capped.max_green_threads = Some(50);
    let a = hub.add_guest(&waves, capped).unwrap();
    let b = hub.add_guest(&waves, options(&["200", "100"])).unwrap();
    hub.run();
    let (a, b) = (finished(&hub, a), finished(&hub, b));
    assert_eq!(a.code, 134);
    let error = a.error.unwrap_or_default();
    assert!(
        error.contains("this guest: it may have at most 50 (its GuestOptions::max_green_threads)"),
        "{error}"
    );
    assert_eq!(b.code, 0, "{}", b.stderr);
}

#[test]
fn a_guest_past_its_time_limit_is_ended_even_while_it_spins() {
    let runtime = runtime();
    let spinner = Program::from_file(runtime.engine(), guest("spinner")).unwrap();
    let fine = Program::from_file(runtime.engine(), guest("spawn_order")).unwrap();
    let mut hub = Hub::new(&runtime);
    let mut limited = options(&["60000", "/nonexistent"]);
    limited.time_limit = Some(std::time::Duration::from_millis(200));
    let s = hub.add_guest(&spinner, limited).unwrap();
    let f = hub.add_guest(&fine, options(&[])).unwrap();
    hub.run();
    let (s, f) = (finished(&hub, s), finished(&hub, f));
    assert_eq!(s.code, 137);
    assert_eq!(
        s.error.as_deref(),
        Some("the guest exceeded its time limit of 0.200 s")
    );
    assert_eq!(f.code, 0);
}

#[test]
fn a_guest_that_grows_its_memory_past_its_limit_ends_naming_the_limit() {
    let runtime = runtime();
    let hog = Program::from_file(runtime.engine(), guest("hog")).unwrap();
    let fine = Program::from_file(runtime.engine(), guest("spawn_order")).unwrap();
    let mut hub = Hub::new(&runtime);
    let mut limited = options(&[]);
    limited.max_memory = Some(64 << 20);
    let h = hub.add_guest(&hog, limited).unwrap();
    let f = hub.add_guest(&fine, options(&[])).unwrap();
    hub.run();
    let (h, f) = (finished(&hub, h), finished(&hub, f));
    assert_eq!(h.code, 137, "{}", h.stderr);
    assert_eq!(
        h.error.as_deref(),
        Some("the guest exceeded its linear memory limit of 64 MiB")
    );
    assert!(h.stdout.contains("holding 32 MiB"), "{}", h.stdout);
    assert!(!h.stdout.contains("holding 64 MiB"), "{}", h.stdout);
    assert_eq!(f.code, 0);
    // A limit below what the module needs to start is refused at once.
    let mut tiny = options(&[]);
    tiny.max_memory = Some(64 * 1024);
    let error = hub.add_guest(&hog, tiny).unwrap_err().to_string();
    assert!(error.contains("more than its limit"), "{error}");
}

#[test]
fn a_handle_wakes_an_idle_hub_to_kill_a_sleeping_guest() {
    let runtime = runtime();
    let sleeper = Program::from_file(runtime.engine(), guest("sleeper")).unwrap();
    let mut hub = Hub::new(&runtime);
    let s = hub.add_guest(&sleeper, options(&["60000"])).unwrap();
    let handle = hub.handle();
    let killer = std::thread::spawn(move || {
        // Once the hub runs (it answers), idle with the guest asleep.
        let wait = std::time::Duration::from_secs(300);
        assert!(handle.usage(s, wait).is_some(), "the hub never answered");
        handle.kill_guest(s, "shutting down");
    });
    hub.run();
    killer.join().unwrap();
    let s = finished(&hub, s);
    // Not woken, the hub would have slept out the guest's 60 s, and the
    // guest ended well.
    assert_eq!(s.code, 137);
    assert_eq!(s.stdout, "");
}
