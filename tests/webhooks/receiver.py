"""A webhook receiver for the tests, verifying every delivery with the official
`standardwebhooks` package from PyPI, not with anything of tollgate's.

    receiver.py PORT DIR

`POST /<behaviour>/<name>`: the secret(s) of endpoint <name> are read from DIR/<name>.secret
(one per line: during a rotation's overlap either may verify). Each request is appended to
DIR/received.ndjson: the name, the time, the headers' id and timestamp, how many signatures
came, whether standardwebhooks verified it, and the parsed body.

Behaviours:
- `ok`: answers 204;
- `flaky`: answers 500 to the first three requests of a webhook-id to <name>, then 204;
- `silent`: never answers (holds the connection for a minute);
- `slow`: answers 204 after a second.
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

PORT, DIR = int(sys.argv[1]), Path(sys.argv[2])
LOCK = threading.Lock()
SEEN: dict = {}


def verify(name: str, body: bytes, headers: dict):
    secrets = (DIR / f"{name}.secret").read_text().split()
    errors = []
    for secret in secrets:
        try:
            return True, Webhook(secret).verify(body, headers), None
        except WebhookVerificationError as error:
            errors.append(str(error))
    return False, None, "; ".join(errors) or "no secret"


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length)
        parts = self.path.strip("/").split("/")
        behaviour, name = (parts + ["", ""])[:2]
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            verified, parsed, error = verify(name, body, headers)
        except Exception as error:  # a missing secret file, a malformed secret
            verified, parsed, error = False, None, repr(error)
        message_id = headers.get("webhook-id", "")
        with LOCK:
            key = (name, message_id)
            SEEN[key] = SEEN.get(key, 0) + 1
            seen = SEEN[key]
            record = {
                "name": name,
                "behaviour": behaviour,
                "at": time.time(),
                "id": message_id,
                "timestamp": headers.get("webhook-timestamp"),
                "signatures": len(headers.get("webhook-signature", "").split()),
                "verified": verified,
                "error": error,
                "body": parsed if verified else body.decode("utf-8", "replace"),
                "seen": seen,
            }
            with open(DIR / "received.ndjson", "a") as log:
                log.write(json.dumps(record) + "\n")
        if behaviour == "silent":
            time.sleep(60)
            return
        if behaviour == "slow":
            time.sleep(1)
        if behaviour == "flaky" and seen <= 3:
            self.send_response(500)
            self.end_headers()
            return
        self.send_response(204 if verified else 400)
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
server.daemon_threads = True
(DIR / "ready").write_text("ready")
server.serve_forever()
