#!/usr/bin/env python3
"""HTTPS collector for the webhook sink's integration test (sink_webhook.rs).

Usage: sink_webhook_server.py PORT CERT KEY LOG FLAGDIR [HEC_TOKEN]
(CERT "-" serves plain HTTP.)

Appends one JSON line per request to LOG (path, headers of interest, body
gunzipped) *before* answering, so a kill between the two leaves a stored but
unacknowledged request, as a real collector would. Files in FLAGDIR steer it:
  fail503     answer 503 with Retry-After: 1 (nothing stored)
  slow        sleep 3 s after storing, before answering (to be killed meanwhile)
  max_bytes   answer 413 to bodies larger than the number in it (nothing stored)
With HEC_TOKEN, requests without "Authorization: Splunk HEC_TOKEN" get 401 and
successes answer HEC's {"text":"Success","code":0}.
"""

import gzip
import json
import os
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, CERT, KEY, LOG, FLAGS = sys.argv[1:6]
TOKEN = sys.argv[6] if len(sys.argv) > 6 else None
LOCK = threading.Lock()


def flag(name):
    return os.path.exists(os.path.join(FLAGS, name))


class Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 so that the client can keep its connection alive across batches.
    protocol_version = "HTTP/1.1"

    def setup(self):
        # One line per TCP connection: the test compares them with requests to
        # see that the client keeps connections alive.
        super().setup()
        with LOCK, open(os.path.join(FLAGS, "connections"), "a") as f:
            f.write("c\n")

    def answer(self, status, body, extra=()):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        if flag("fail503"):
            return self.answer(503, '{"text":"busy"}', [("Retry-After", "1")])
        if TOKEN is not None and self.headers.get("Authorization") != "Splunk " + TOKEN:
            return self.answer(401, '{"text":"Invalid authorization","code":3}')
        body = gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw
        if flag("max_bytes"):
            with open(os.path.join(FLAGS, "max_bytes")) as f:
                if len(body) > int(f.read().strip()):
                    return self.answer(413, '{"text":"too large"}')
        entry = {
            "path": self.path,
            "content_type": self.headers.get("Content-Type"),
            "content_encoding": self.headers.get("Content-Encoding"),
            "wire_bytes": len(raw),
            "body": body.decode(),
        }
        with LOCK, open(LOG, "a") as log:
            log.write(json.dumps(entry) + "\n")
        if flag("slow"):
            time.sleep(3)
        self.answer(200, '{"text":"Success","code":0}')

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", int(PORT)), Handler)
if CERT != "-":
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(CERT, KEY)
    server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
