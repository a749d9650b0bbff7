"""A stand-in for the operators' paging service: Alertmanager's webhook receiver.

    python3 webhook_receiver.py PORT FILE

Listens on 127.0.0.1:PORT (run it in the staging host's network namespace: its loopback is
Alertmanager's) and appends each notification's JSON body as one line to FILE.
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(sys.argv[2], "a") as received:
            received.write(json.dumps(json.loads(body)) + "\n")
        self.send_response(200)
        self.end_headers()

    def log_message(self, *arguments):
        pass


if __name__ == "__main__":
    HTTPServer(("127.0.0.1", int(sys.argv[1])), Receiver).serve_forever()
