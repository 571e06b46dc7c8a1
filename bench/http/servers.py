"""eventlet's and gevent's HTTP servers for the HTTP benchmark: the same WSGI
app under eventlet.wsgi.server and gevent.pywsgi.WSGIServer, answering
/hello with "hello" and /json with the benchmark's 4 KB document, serialised
for each request. With CERT and KEY, behind TLS (eventlet.wrap_ssl; pywsgi's
certfile/keyfile).

Usage: python servers.py (eventlet|gevent) HOST:PORT [CERT KEY]
"""
import json
import sys

system, addr = sys.argv[1], sys.argv[2]
tls = sys.argv[3:5]
host, port = addr.rsplit(":", 1)
port = int(port)

# The same 40 records as bench/guest/src/http_bench.rs and hyper_server.rs.
DOCUMENT = [
    {
        "id": i,
        "name": f"user {i}",
        "email": f"user{i}@example.com",
        "active": i % 2 == 0,
        "score": i * 1.5,
        "tags": ["green", "thread"],
    }
    for i in range(40)
]


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/hello":
        body, kind = b"hello", "text/plain"
    elif path == "/json":
        body, kind = json.dumps(DOCUMENT, separators=(",", ":")).encode(), "application/json"
    else:
        start_response("404 Not Found", [("Content-Length", "0")])
        return [b""]
    start_response("200 OK", [("Content-Type", kind), ("Content-Length", str(len(body)))])
    return [body]


class Quiet:
    def write(self, *args):
        pass


if system == "eventlet":
    import eventlet
    import eventlet.wsgi

    sock = eventlet.listen((host, port), backlog=4096)
    if tls:
        sock = eventlet.wrap_ssl(sock, certfile=tls[0], keyfile=tls[1], server_side=True)
    eventlet.wsgi.server(sock, app, log=Quiet(), max_size=20000, keepalive=True)
else:
    from gevent.pywsgi import WSGIServer

    extra = {"certfile": tls[0], "keyfile": tls[1]} if tls else {}
    WSGIServer((host, port), app, log=None, backlog=4096, **extra).serve_forever()
