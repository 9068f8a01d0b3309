"""A tiny upstream that routes the raw request path as Flask (Werkzeug) does: the path is
percent-decoded once (``%2F`` becomes ``/``), ``..``, ``;params`` and ``\\`` are left as they
are, and the first route whose pattern matches wins. Routes: ``/products/<path>`` and
``/admin/<path>``. Each answer names the handler that served it.

Started by tests/paths.rs: prints the port it listens on (loopback, ephemeral), then serves
until its standard input closes.
"""

import re
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROUTES = [
    ("admin", re.compile(r"^/admin/(.*)$")),
    ("products", re.compile(r"^/products/(.*)$")),
]


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        raw = self.path.split("?", 1)[0].split("#", 1)[0]
        path = urllib.parse.unquote(raw)
        handler = next((name for name, rx in ROUTES if rx.match(path)), "none")
        body = handler.encode()
        self.send_response(200 if handler != "none" else 404)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
sys.stdin.read()
server.shutdown()
