//! Sleeps 1 ms N times and prints how late the latest wake-up was, in ms
//! (with a second argument `percentiles`: p50, p99 and the worst).
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(20);
    let percentiles = args.next().as_deref() == Some("percentiles");
    let mut late = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let start = Instant::now();
        let _ = wasmlet::sleep(Duration::from_millis(1));
        late.push(start.elapsed().saturating_sub(Duration::from_millis(1)));
    }
    late.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let worst = late.last().copied().unwrap_or_default();
    if percentiles {
        let at = |q: f64| late[((late.len() as f64 * q) as usize).min(late.len() - 1)];
        println!("{:.3} {:.3} {:.3}", ms(at(0.5)), ms(at(0.99)), ms(worst));
    } else {
        println!("{:.3}", ms(worst));
    }
}
