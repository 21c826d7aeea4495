"""A receiver of Switchboard's webhooks: verifies each request's signature
with the Standard Webhooks library (pip install standardwebhooks) and
handles each event once, keyed by webhook-id. docs/receivers.md shows this
file; a test in cmd/switchboard runs it against a real delivery."""

import json
import os
from http.server import BaseHTTPRequestHandler, HTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

wh = Webhook(os.environ["WEBHOOK_SECRET"])  # whsec_...
# Handled event ids. Keep them where your writes go (a table with a unique
# key on the id) for at least as long as Switchboard retries.
handled = set()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        if self.path != "/webhooks":
            self.send_response(404)
            self.end_headers()
            return
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            # Verify the exact bytes received: parse JSON only afterwards.
            event = wh.verify(body, dict(self.headers))
        except WebhookVerificationError:
            self.send_response(401)
            self.end_headers()
            return
        event_id = self.headers["webhook-id"]  # the event id, the same on every retry
        if event_id in handled:
            print("duplicate", event_id, flush=True)
        else:
            handled.add(event_id)
            print("handled", event_id, json.dumps(event), flush=True)
        self.send_response(204)  # a 2xx, or Switchboard retries
        self.end_headers()

    def log_message(self, format, *args):
        pass  # one line per event is printed above


host, port = os.environ["LISTEN"].rsplit(":", 1)  # e.g. 127.0.0.1:9000
server = HTTPServer((host, int(port)), Handler)
print("listening on", os.environ["LISTEN"], flush=True)
server.serve_forever()
