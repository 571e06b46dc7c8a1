//! The embedding API: several guests on one hub, isolated from each other, and
//! a host that survives anything a guest passes to its functions.

mod support;
use support::{finished, guest, options, run, runtime};

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

#[test]
fn bogus_ids_and_pointers_only_hurt_the_caller() {
    let r = run("bogus", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout.lines().collect::<Vec<_>>(),
        [
            "kill unknown: 2",
            "kill 0: 2",
            "cancel unknown: 2",
            "join unknown: 0",
            "link unknown: 0",
            "unlink unknown: 0",
            "unpark unknown: 0",
            "next-link with none: 0",
            "park, zero timeout: 0",
            "spawned garbage task: true",
            "join it: 0",
            "huge stack: green thread trapped: wasm trap",
            "still fine",
        ]
    );
}
