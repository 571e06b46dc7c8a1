"""eventlet's and gevent's echo servers for the network benchmark: eventlet's
classic (eventlet.listen + spawn_n per connection) and gevent's StreamServer.

Usage: python servers.py (eventlet|gevent) HOST:PORT
"""
import sys

system, addr = sys.argv[1], sys.argv[2]
host, port = addr.rsplit(":", 1)
port = int(port)

if system == "eventlet":
    import eventlet

    def handle(conn):
        while True:
            data = conn.recv(16384)
            if not data:
                break
            conn.sendall(data)
        conn.close()

    server = eventlet.listen((host, port), backlog=4096)
    while True:
        conn, _ = server.accept()
        eventlet.spawn_n(handle, conn)
else:
    from gevent.server import StreamServer

    def handle(conn, _addr):
        while True:
            data = conn.recv(16384)
            if not data:
                break
            conn.sendall(data)

    StreamServer((host, port), handle, backlog=4096).serve_forever()
