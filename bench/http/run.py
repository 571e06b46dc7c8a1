"""The HTTP benchmark: wasmlet's HTTP server (`wasmlet::http::serve`, the
bench guest's http-bench) beside eventlet.wsgi, gevent's pywsgi and hyper on
one tokio thread, all driven by the same native client
(bench/http/client.rs) on loopback, bounded in count and time: "hello" and
a 4 KB JSON document at 100 and 10,000 keep-alive connections, and "hello"
over TLS at 100 (wasmlet's TLS is the host's: --listen-tls). Prints a table
and writes bench/results/http.json.

Usage: python bench/http/run.py [--quick] [--systems a,b,...] [--cases a,b,...]
(bench/run sets up everything and calls this.)
"""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from loopback import free_addr, start_server  # noqa: E402
WASMLET = ROOT / "target/release/wasmlet"
GUEST = ROOT / "bench/guest/target/wasm32-wasip1-threads/release/http-bench.wasm"
CLIENT = ROOT / "target/release/examples/http-bench-client"
HYPER = ROOT / "target/release/examples/http-bench-hyper"
PYTHON = str(ROOT / "bench/.venv/bin/python") if (ROOT / "bench/.venv/bin/python").exists() else sys.executable
# "compact" is wasmlet's server in the compact execution model.
SYSTEMS = ["wasmlet", "compact", "eventlet", "gevent", "hyper"]

# (metric, path, connections, tls, what)
CASES = [
    ("hello_100", "/hello", 100, False, "hello, 100 connections"),
    ("json_100", "/json", 100, False, "4 KB JSON, 100 connections"),
    ("hello_10k", "/hello", 10_000, False, "hello, 10,000 connections"),
    ("json_10k", "/json", 10_000, False, "4 KB JSON, 10,000 connections"),
    ("tls_hello_100", "/hello", 100, True, "TLS: hello, 100 connections"),
    ("tls_json_100", "/json", 100, True, "TLS: 4 KB JSON, 100 connections"),
]


def certificate(folder):
    """A CA and a server certificate it signed for localhost: (cert, key,
    ca); the client trusts the CA, as a real one would."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    (folder / "server.ext").write_text(
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n")
    for args in (
        ["req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
         "-subj", "/CN=wasmlet bench CA"],
        ["req", *ec, "-keyout", "key.pem", "-out", "server.csr", "-subj", "/CN=localhost"],
        ["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "cert.pem", "-days", "2", "-extfile", "server.ext"],
    ):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder)
    return folder / "cert.pem", folder / "key.pem", folder / "ca.pem"


def start(system, addr, tls):
    if system in ("wasmlet", "compact"):
        model = "fibers" if system == "wasmlet" else "compact"
        listen = ["--listen-tls", addr, "--cert", str(tls[0]), "--key", str(tls[1])] if tls \
            else ["--listen", addr]
        cmd = [str(WASMLET), "run", "--threads", model, *listen, str(GUEST), "--", addr]
    elif system == "hyper":
        cmd = [str(HYPER), addr, *(map(str, tls[:2]) if tls else [])]
    else:
        cmd = [PYTHON, "-W", "ignore", str(ROOT / "bench/http/servers.py"), system, addr,
               *(map(str, tls[:2]) if tls else [])]
    return start_server(system, cmd, addr)


def client(addr, path, connections, seconds, ca):
    args = [str(CLIENT), addr, path, str(connections), str(seconds), *([str(ca)] if ca else [])]
    out = subprocess.run(args, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        return {"failed": out.stderr.strip().splitlines()[-1:] or ["?"]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(system, quick, tls, cases):
    seconds = 1 if quick else 3
    figures = {}
    for metric, path, connections, secure, _ in cases:
        if quick:
            connections = min(connections, 500)
        addr = free_addr()
        proc = start(system, addr, tls if secure else None)
        try:
            figures[metric] = client(addr, path, connections, seconds, tls[2] if secure else None)
        finally:
            proc.kill()
            proc.wait()
    return figures


def fmt(v, digits=0):
    if v is None:
        return "-"
    return f"{v:,.{digits}f}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--cases", default=",".join(c[0] for c in CASES))
    args = parser.parse_args()
    systems = args.systems.split(",")
    cases = [c for c in CASES if c[0] in args.cases.split(",")]
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        tls = certificate(Path(folder))
        for system in systems:
            print(f"measuring {system} ...", file=sys.stderr, flush=True)
            results[system] = measure(system, args.quick, tls, cases)
    header = ["case", *(f"{s} req/s (p99 ms)" for s in systems)]
    for other in ("gevent", "hyper"):
        if other in systems and "wasmlet" in systems:
            header.append(f"wasmlet vs {other}")
    rows = []
    for metric, _, _, _, what in cases:
        row = [what]
        for s in systems:
            r = results[s][metric]
            row.append("failed" if "failed" in r else
                       f"{fmt(r['requests_per_s'])} ({fmt(r['p99_ms'], 1)})")
        for other in ("gevent", "hyper"):
            if other in systems and "wasmlet" in systems:
                ours, theirs = results["wasmlet"][metric], results[other][metric]
                if "requests_per_s" in ours and "requests_per_s" in theirs and theirs["requests_per_s"]:
                    row.append(f"{ours['requests_per_s'] / theirs['requests_per_s']:.2f}x")
                else:
                    row.append("-")
        rows.append(row)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, ["-" * w for w in widths], *rows]:
        print(" | ".join(str(c).ljust(w) for c, w in zip(r, widths)))
    out = ROOT / "bench/results/http.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"quick": args.quick, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
