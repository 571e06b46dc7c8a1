#!/usr/bin/env python3
"""Draws the benchmark results as SVG charts for the docs (bench/run calls it).

    python3 bench/charts.py [--suite bench/results/latest.json]
                            [--net bench/results/net.json]
                            [--http bench/results/http.json] [--out docs/charts]

Writes, from the suite's figures (bench/suite.py) and the echo benchmark's
(bench/net/run.py), whichever are there and have peers to compare with:
- ratios.svg: every time figure as a ratio to eventlet's, log scale;
- memory.svg: resident memory per sleeping green thread;
- latency.svg: timer lateness p50/p99, and echo p50/p99 at 10,000 connections;
- echo.svg: echo round trips/s at 100 and 10,000 connections, beside tokio;
- http.svg: HTTP requests/s (hello, 4 KB JSON, TLS) beside eventlet.wsgi,
  gevent's pywsgi and hyper (bench/http/run.py).

Plain SVG written by hand: no plotting library to install.
"""

import argparse
import json
import math
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

COLOURS = {
    "wasmlet": "#1f6feb",
    "compact": "#8250df",
    "eventlet": "#9a6700",
    "gevent": "#cf222e",
    "tokio": "#57606a",
    "hyper": "#57606a",
}
LABELS = {
    "wasmlet": "wasmlet (fibers)",
    "compact": "wasmlet (compact)",
    "eventlet": "eventlet",
    "gevent": "gevent",
    "tokio": "tokio",
    "hyper": "hyper (tokio, 1 thread)",
}
FONT = 'font-family="system-ui, sans-serif" font-size="12"'


def esc(text):
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def number(value):
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return f"{value:.3g}"


class Bars:
    """Groups of horizontal bars, one bar per system, on a linear or log axis."""

    def __init__(self, title, note, log, unit="", reference=None):
        self.title, self.note, self.log, self.unit = title, note, log, unit
        # (value, label): a line drawn across, e.g. eventlet's 1x.
        self.reference = reference
        self.groups = []  # (label, [(system, value, text)])

    def group(self, label, bars):
        bars = [(s, v, t) for s, v, t in bars if v is not None and v > 0]
        if bars:
            self.groups.append((label, bars))

    def svg(self):
        longest = max(len(label) for label, _ in self.groups)
        left, width, bar, gap = 20 + int(6.6 * longest), 420, 13, 16
        values = [v for _, bars in self.groups for _, v, _ in bars]
        if self.log:
            lo = 10 ** math.floor(math.log10(min(values)))
            hi = 10 ** math.ceil(math.log10(max(values)))
            hi = max(hi, lo * 10)

            def x(v):
                return left + width * (math.log10(v) - math.log10(lo)) / (
                    math.log10(hi) - math.log10(lo)
                )

            ticks = [lo * 10**k for k in range(int(round(math.log10(hi / lo))) + 1)]
        else:
            hi = max(values) * 1.05

            def x(v):
                return left + width * v / hi

            step = 10 ** math.floor(math.log10(hi))
            ticks = [step * k for k in range(int(hi // step) + 1)]
        systems = []
        for _, bars in self.groups:
            for system, _, _ in bars:
                if system not in systems:
                    systems.append(system)
        top = 62
        height = top + sum(len(b) * bar + gap for _, b in self.groups) + 46
        out = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 110}" '
            f'height="{height}" {FONT}>',
            f'<rect width="100%" height="100%" fill="white"/>',
            f'<text x="10" y="20" font-size="15" font-weight="bold">{esc(self.title)}</text>',
            f'<text x="10" y="38" fill="#57606a">{esc(self.note)}</text>',
        ]
        y = top
        for label, bars in self.groups:
            out.append(
                f'<text x="{left - 8}" y="{y + len(bars) * bar / 2 + 4}" '
                f'text-anchor="end">{esc(label)}</text>'
            )
            for system, value, text in bars:
                start = x(ticks[0]) if self.log else left
                end = max(x(value), start + 1)
                out.append(
                    f'<rect x="{start:.1f}" y="{y}" width="{end - start:.1f}" '
                    f'height="{bar - 2}" fill="{COLOURS[system]}"/>'
                )
                out.append(
                    f'<text x="{end + 4:.1f}" y="{y + bar - 3}" font-size="10">{esc(text)}</text>'
                )
                y += bar
            y += gap
        for tick in ticks:
            tx = x(tick)
            out.append(
                f'<line x1="{tx:.1f}" y1="{top - 4}" x2="{tx:.1f}" y2="{y - gap + 2}" '
                f'stroke="#d0d7de" stroke-width="0.5"/>'
            )
            out.append(
                f'<text x="{tx:.1f}" y="{y - gap + 14}" font-size="10" '
                f'text-anchor="middle">{esc(number(tick))}{esc(self.unit)}</text>'
            )
        if self.reference:
            value, label = self.reference
            rx = x(value)
            out.append(
                f'<line x1="{rx:.1f}" y1="{top - 8}" x2="{rx:.1f}" y2="{y - gap + 2}" '
                f'stroke="#24292f" stroke-width="1.5"/>'
            )
            out.append(
                f'<text x="{rx + 3:.1f}" y="{top - 10}" font-size="10">{esc(label)}</text>'
            )
        lx = 10
        for system in systems:
            out.append(
                f'<rect x="{lx}" y="{height - 18}" width="10" height="10" '
                f'fill="{COLOURS[system]}"/>'
            )
            out.append(f'<text x="{lx + 14}" y="{height - 9}">{esc(LABELS[system])}</text>')
            lx += 24 + 7 * len(LABELS[system])
        out.append("</svg>")
        return "\n".join(out) + "\n"


def suite_charts(suite):
    figures = {f["metric"]: f for f in suite["figures"]}
    have = [s for s in ("wasmlet", "compact", "gevent") if s in suite["systems"]]
    if "eventlet" not in suite["systems"]:
        return {}
    ratios = Bars(
        "Time, as a ratio to eventlet (log scale; lower is better)",
        f"bench/suite.py, {suite['when'][:10]}, {suite['machine']['cores']} cores; "
        "eventlet = 1",
        log=True,
        unit="x",
        reference=(1.0, "eventlet"),
    )
    for f in suite["figures"]:
        if f["metric"] in ("rss_per_thread_bytes", "spawnall_peak_mib"):
            continue
        base = f.get("eventlet")
        if not base:
            continue
        ratios.group(
            f["what"],
            [(s, f[s] / base, f"{number(f[s] / base)}x") for s in have if f.get(s)],
        )
    memory = Bars(
        "Resident memory per sleeping green thread (lower is better)",
        "100,000 sleepers; bench/suite.py",
        log=False,
        unit=" B",
    )
    rss = figures["rss_per_thread_bytes"]
    memory.group(
        "per green thread",
        [
            (s, rss[s], f"{number(rss[s])} B")
            for s in ("wasmlet", "compact", "eventlet", "gevent")
            if rss.get(s)
        ],
    )
    return {"ratios": ratios, "memory": memory}


def latency_chart(suite, net):
    chart = Bars(
        "Latency percentiles (log scale; lower is better)",
        "timer lateness: 10,000 sleepers of 1-10 ms; echo: 10,000 connections",
        log=True,
        unit=" ms",
    )
    if suite:
        figures = {f["metric"]: f for f in suite["figures"]}
        for metric, label in (("late_p50_ms", "timer lateness p50"), ("late_p99_ms", "timer lateness p99")):
            f = figures[metric]
            chart.group(
                label,
                [
                    (s, f[s], f"{number(f[s])} ms")
                    for s in ("wasmlet", "compact", "eventlet", "gevent")
                    if f.get(s)
                ],
            )
    if net:
        for key, label in (("p50_10k", "echo p50, 10k connections"), ("p99_10k", "echo p99, 10k connections")):
            chart.group(
                label,
                [
                    (s, r[key], f"{number(r[key])} ms")
                    for s, r in net["results"].items()
                    if s in COLOURS
                ],
            )
    return chart


def echo_chart(net):
    chart = Bars(
        "Echo round trips per second (higher is better)",
        "64-byte messages, one in flight per connection, loopback; bench/net/run.py",
        log=False,
    )
    for key, label in (("rps_100", "100 connections"), ("rps_10k", "10,000 connections")):
        chart.group(
            label,
            [(s, r[key], f"{number(r[key])}/s") for s, r in net["results"].items() if s in COLOURS],
        )
    return chart


def http_chart(http):
    chart = Bars(
        "HTTP requests per second (higher is better)",
        "keep-alive GETs, one in flight per connection, loopback; bench/http/run.py",
        log=False,
    )
    labels = {
        "hello_100": "hello, 100 connections",
        "json_100": "4 KB JSON, 100 connections",
        "hello_10k": "hello, 10,000 connections",
        "json_10k": "4 KB JSON, 10,000 connections",
        "tls_hello_100": "TLS: hello, 100 connections",
        "tls_json_100": "TLS: 4 KB JSON, 100 connections",
    }
    for key, label in labels.items():
        bars = []
        for s, r in http["results"].items():
            figure = r.get(key, {}).get("requests_per_s")
            if s in COLOURS and figure:
                bars.append((s, figure, f"{number(figure)}/s"))
        chart.group(label, bars)
    return chart


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", type=Path, default=ROOT / "bench/results/latest.json")
    parser.add_argument("--net", type=Path, default=ROOT / "bench/results/net.json")
    parser.add_argument("--http", type=Path, default=ROOT / "bench/results/http.json")
    parser.add_argument("--out", type=Path, default=ROOT / "docs/charts")
    args = parser.parse_args()
    suite = json.loads(args.suite.read_text()) if args.suite.exists() else None
    net = json.loads(args.net.read_text()) if args.net.exists() else None
    if suite and suite.get("quick"):
        suite = None  # quick runs are for checking, not for the docs
    if net and net.get("quick"):
        net = None
    http = json.loads(args.http.read_text()) if args.http.exists() else None
    if http and http.get("quick"):
        http = None
    charts = {}
    if suite:
        charts.update(suite_charts(suite))
    if suite or net:
        charts["latency"] = latency_chart(suite if suite and "eventlet" in suite["systems"] else None, net)
    if net:
        charts["echo"] = echo_chart(net)
    if http:
        charts["http"] = http_chart(http)
    if not charts:
        print("charts: no full results with peers to draw (run bench/run without --quick)")
        return
    args.out.mkdir(parents=True, exist_ok=True)
    for name, chart in charts.items():
        if chart.groups:
            (args.out / f"{name}.svg").write_text(chart.svg())
            print(f"charts: wrote {args.out / (name + '.svg')}")


if __name__ == "__main__":
    main()
