//! What `wasmlet serve` counts, and its rendering in Prometheus' text
//! exposition format (`GET /metrics`).
//!
//! Labels come only from the manifest (plugin names) and from functions a
//! plugin answered: a caller who asks for made-up functions is counted
//! under `function=""`, so it cannot grow the host's memory one label at a
//! time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency histogram's buckets, in seconds.
const BOUNDS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The counts, shared by every request.
#[derive(Default)]
pub(crate) struct Metrics {
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    /// Calls answered, by plugin, function and outcome.
    calls: BTreeMap<(String, String, &'static str), u64>,
    /// Call latency, by plugin.
    latency: BTreeMap<String, Histogram>,
    /// Instances started again after they ended, by plugin.
    restarts: BTreeMap<String, u64>,
    /// Calls refused because the host was at its in-flight limit.
    host_busy: u64,
}

#[derive(Default)]
struct Histogram {
    buckets: [u64; BOUNDS.len()],
    count: u64,
    sum: f64,
}

/// One instance's use, as `/metrics` shows it.
pub(crate) struct InstanceUse {
    pub plugin: String,
    pub instance: usize,
    pub usage: Option<crate::GuestUsage>,
}

/// What `/metrics` shows besides the counts.
pub(crate) struct Gauges {
    /// Calls in flight, by plugin.
    pub in_flight: Vec<(String, usize)>,
    pub instances: Vec<InstanceUse>,
    pub draining: bool,
}

impl Metrics {
    /// Counts a call of `plugin`'s `function` that ended as `outcome` after
    /// `took`. `known` says whether the plugin has the function (else it is
    /// counted without its name).
    pub fn call(
        &self,
        plugin: &str,
        function: &str,
        known: bool,
        outcome: &'static str,
        took: Duration,
    ) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let function = if known { function } else { "" };
        *counts
            .calls
            .entry((plugin.to_string(), function.to_string(), outcome))
            .or_default() += 1;
        let histogram = counts.latency.entry(plugin.to_string()).or_default();
        let seconds = took.as_secs_f64();
        for (bucket, bound) in histogram.buckets.iter_mut().zip(BOUNDS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        histogram.count += 1;
        histogram.sum += seconds;
    }

    /// Counts an instance of `plugin` started again.
    pub fn restart(&self, plugin: &str) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        *counts.restarts.entry(plugin.to_string()).or_default() += 1;
    }

    /// Counts a call refused at the host's in-flight limit.
    pub fn host_busy(&self) {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .host_busy += 1;
    }

    /// Everything, in Prometheus' text format.
    pub fn render(&self, gauges: &Gauges) -> String {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        let head = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        head(
            &mut out,
            "wasmlet_calls_total",
            "counter",
            "Calls answered, by plugin, function and outcome (ok or the error's kind).",
        );
        for ((plugin, function, outcome), n) in &counts.calls {
            let _ = writeln!(
                out,
                "wasmlet_calls_total{{plugin=\"{}\",function=\"{}\",outcome=\"{outcome}\"}} {n}",
                escape(plugin),
                escape(function)
            );
        }
        head(
            &mut out,
            "wasmlet_call_duration_seconds",
            "histogram",
            "Time from a call's arrival to its answer, by plugin.",
        );
        for (plugin, h) in &counts.latency {
            let plugin = escape(plugin);
            for (bound, n) in BOUNDS.iter().zip(h.buckets) {
                let _ = writeln!(out, "wasmlet_call_duration_seconds_bucket{{plugin=\"{plugin}\",le=\"{bound}\"}} {n}");
            }
            let _ = writeln!(
                out,
                "wasmlet_call_duration_seconds_bucket{{plugin=\"{plugin}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "wasmlet_call_duration_seconds_sum{{plugin=\"{plugin}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "wasmlet_call_duration_seconds_count{{plugin=\"{plugin}\"}} {}",
                h.count
            );
        }
        head(
            &mut out,
            "wasmlet_calls_in_flight",
            "gauge",
            "Calls running now, by plugin.",
        );
        for (plugin, n) in &gauges.in_flight {
            let _ = writeln!(
                out,
                "wasmlet_calls_in_flight{{plugin=\"{}\"}} {n}",
                escape(plugin)
            );
        }
        head(
            &mut out,
            "wasmlet_host_busy_total",
            "counter",
            "Calls refused because the host was at its in-flight limit.",
        );
        let _ = writeln!(out, "wasmlet_host_busy_total {}", counts.host_busy);
        head(
            &mut out,
            "wasmlet_instance_restarts_total",
            "counter",
            "Plugin instances started again after they ended, by plugin.",
        );
        for (plugin, n) in &counts.restarts {
            let _ = writeln!(
                out,
                "wasmlet_instance_restarts_total{{plugin=\"{}\"}} {n}",
                escape(plugin)
            );
        }
        type Field = fn(&crate::GuestUsage) -> f64;
        let usage: [(&str, &str, &str, Field); 5] = [
            (
                "wasmlet_instance_green_threads",
                "gauge",
                "Green threads alive, by plugin instance.",
                |u| u.green_threads as f64,
            ),
            (
                "wasmlet_instance_memory_bytes",
                "gauge",
                "Linear memory, by plugin instance.",
                |u| u.memory as f64,
            ),
            (
                "wasmlet_instance_host_memory_bytes",
                "gauge",
                "Host memory charged, by plugin instance.",
                |u| u.host_memory as f64,
            ),
            (
                "wasmlet_instance_descriptors",
                "gauge",
                "Sockets and files open, by plugin instance.",
                |u| u.descriptors as f64,
            ),
            (
                "wasmlet_instance_cpu_seconds_total",
                "counter",
                "CPU time used, by plugin instance.",
                |u| u.cpu_time.as_secs_f64(),
            ),
        ];
        for (name, kind, help, field) in usage {
            head(&mut out, name, kind, help);
            for i in &gauges.instances {
                if let Some(usage) = &i.usage {
                    let _ = writeln!(
                        out,
                        "{name}{{plugin=\"{}\",instance=\"{}\"}} {}",
                        escape(&i.plugin),
                        i.instance,
                        field(usage)
                    );
                }
            }
        }
        head(
            &mut out,
            "wasmlet_draining",
            "gauge",
            "1 while the host drains (takes no new calls) before it exits.",
        );
        let _ = writeln!(out, "wasmlet_draining {}", u8::from(gauges.draining));
        out
    }
}

/// A label value as the text format wants it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_render_in_the_text_format() {
        let metrics = Metrics::default();
        metrics.call("text", "upper", true, "ok", Duration::from_micros(300));
        metrics.call("text", "upper", true, "ok", Duration::from_millis(20));
        metrics.call(
            "text",
            "made-up-1",
            false,
            "no_such_function",
            Duration::ZERO,
        );
        metrics.call(
            "text",
            "made-up-2",
            false,
            "no_such_function",
            Duration::ZERO,
        );
        metrics.restart("text");
        let out = metrics.render(&Gauges {
            in_flight: vec![("text".into(), 2)],
            instances: Vec::new(),
            draining: false,
        });
        assert!(
            out.contains(
                "wasmlet_calls_total{plugin=\"text\",function=\"upper\",outcome=\"ok\"} 2"
            ),
            "{out}"
        );
        // Made-up names share one label.
        assert!(
            out.contains(
                "wasmlet_calls_total{plugin=\"text\",function=\"\",outcome=\"no_such_function\"} 2"
            ),
            "{out}"
        );
        assert!(!out.contains("made-up"), "{out}");
        assert!(
            out.contains("wasmlet_call_duration_seconds_bucket{plugin=\"text\",le=\"0.0005\"} 3"),
            "{out}"
        );
        assert!(
            out.contains("wasmlet_call_duration_seconds_bucket{plugin=\"text\",le=\"0.025\"} 4"),
            "{out}"
        );
        assert!(
            out.contains("wasmlet_call_duration_seconds_count{plugin=\"text\"} 4"),
            "{out}"
        );
        assert!(
            out.contains("wasmlet_calls_in_flight{plugin=\"text\"} 2"),
            "{out}"
        );
        assert!(
            out.contains("wasmlet_instance_restarts_total{plugin=\"text\"} 1"),
            "{out}"
        );
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
