"""An HTTP/1.1 peer no one here wrote the protocol of: Python's threaded
http.server, plain or (with --tls CERT KEY) behind Python's ssl module.
Prints its port, then serves until killed. For tests/all/http.rs and
tests/all/tls.rs:

  /hello    "hello"            /port     the client's own port
  /old      302 to /hello      /slow     "late", after 5 s
  /chunked  a chunked body     /close    a body that ends at close
  POST      the body back      else      404
"""
import http.server
import socketserver
import ssl
import sys
import time


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, code, body, **headers):
        self.send_response(code)
        for k, v in headers.items():
            self.send_header(k.replace("_", "-"), v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/hello":
            self.send(200, b"hello")
        elif self.path == "/port":
            self.send(200, str(self.client_address[1]).encode())
        elif self.path == "/old":
            self.send(302, b"", Location="/hello")
        elif self.path == "/slow":
            time.sleep(5)
            self.send(200, b"late")
        elif self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"one ", b"two ", b"three"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/close":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"the rest")
            self.close_connection = True
        else:
            self.send(404, b"no")

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send(200, body)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


server = Server(("127.0.0.1", 0), Handler)
if sys.argv[1:2] == ["--tls"]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[2], sys.argv[3])
    server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
