//! kill before start, kill while suspended, kill a finished thread, kill_with,
//! kill self, cancel before and after start; the caller of kill yields.
use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use wasmlet::GreenThreadError;

fn main() {
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    let never = wasmlet::spawn(move || r.set(true));
    println!("kill before start: {}", never.kill());
    let _ = wasmlet::sleep(Duration::ZERO);
    println!("  ran: {}, wait: {}", ran.get(), never.wait().unwrap_err());

    let reached_end = Rc::new(Cell::new(false));
    let e = reached_end.clone();
    let sleeper = wasmlet::spawn(move || -> Result<(), wasmlet::Interrupted> {
        wasmlet::sleep(Duration::from_secs(3600))?;
        e.set(true);
        Ok(())
    });
    let _ = wasmlet::sleep(Duration::ZERO); // let it start and suspend
    println!("kill while sleeping: {}", wasmlet::kill(sleeper.thread()));
    println!("  dead right after kill: {}", sleeper.dead());
    println!(
        "  reached end: {}, wait: {}",
        reached_end.get(),
        sleeper.wait().unwrap_err()
    );

    let done = wasmlet::spawn(|| 5);
    done.wait().unwrap();
    println!(
        "kill finished: {}, wait still: {:?}",
        done.kill(),
        done.wait()
    );

    let victim = wasmlet::spawn(|| wasmlet::sleep(Duration::from_secs(3600)));
    let _ = wasmlet::sleep(Duration::ZERO);
    victim.kill_with("custom failure");
    match victim.wait() {
        Err(GreenThreadError::KilledWith(e)) => println!("kill_with: {e}"),
        other => println!("kill_with: unexpected {other:?}"),
    }
    // The same error through `?` in I/O code: it rides inside the io::Error
    // whole, and comes back out.
    let as_io = || -> std::io::Result<()> {
        let _slept = victim.wait()?;
        Ok(())
    };
    let io_error = as_io().unwrap_err();
    let inner = io_error
        .get_ref()
        .and_then(|e| e.downcast_ref::<GreenThreadError>());
    match inner {
        Some(GreenThreadError::KilledWith(e)) => println!("  inside an io::Error: {e}"),
        other => println!("  inside an io::Error: unexpected {other:?}"),
    }

    let suicidal = wasmlet::spawn(|| {
        wasmlet::getcurrent().kill();
        "unreachable"
    });
    println!("kill self: {}", suicidal.wait().unwrap_err());

    let c_ran = Rc::new(Cell::new(false));
    let r = c_ran.clone();
    let pending = wasmlet::spawn(move || r.set(true));
    println!("cancel before start: {}", pending.cancel());
    let _ = wasmlet::sleep(Duration::ZERO);
    println!(
        "  ran: {}, wait: {}",
        c_ran.get(),
        pending.wait().unwrap_err()
    );

    let started = wasmlet::spawn(|| {
        let _ = wasmlet::sleep(Duration::from_millis(1));
        "finished"
    });
    let _ = wasmlet::sleep(Duration::ZERO);
    println!("cancel after start: {}", started.cancel());
    println!("  wait: {:?}", started.wait());

    // kill yields: a third thread queued before the kill runs before kill returns.
    let order = Rc::new(std::cell::RefCell::new(Vec::new()));
    let o = order.clone();
    let bystander = wasmlet::spawn(move || o.borrow_mut().push("bystander"));
    let target = wasmlet::spawn(|| wasmlet::sleep(Duration::from_secs(3600)));
    let _ = wasmlet::sleep(Duration::ZERO);
    let o = order.clone();
    wasmlet::spawn_n(move || o.borrow_mut().push("queued before kill"));
    target.kill();
    order.borrow_mut().push("kill returned");
    bystander.wait().unwrap();
    println!("kill yields: {:?}", order.borrow());
}
