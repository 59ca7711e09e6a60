"""Receive cmsv6's webhooks: register this program's URL (admins only), then check each
delivery's signature and timestamp, skip repeats by event id, and answer 204 at once.

    python3 webhook_receiver.py [PORT] [COUNT] [EVENTS]
    # stop (and unregister) after COUNT events; EVENTS: comma-separated, default all

cmsv6 must reach this machine's PORT (default 8090). A real receiver runs behind your
web server over https, and keeps the ids it saw in a database rather than in memory.
"""

import hashlib
import hmac
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

from cmsv6_api import call, login

port = int(sys.argv[1]) if len(sys.argv) > 1 else 8090
count = int(sys.argv[2]) if len(sys.argv) > 2 else None
ALL = ["alarm.opened", "alarm.closed", "alarm.handled", "device.online", "device.offline",
       "command.answered"]
events = sys.argv[3].split(",") if len(sys.argv) > 3 else ALL
token = login()
hook = call("POST", "/api/v1/webhooks", token=token, body={
    "url": f"http://127.0.0.1:{port}/cmsv6",
    "events": events,
    "description": "webhook_receiver.py",
})
SECRET = hook["secret"].encode()  # shown once, at registration: keep it safe
seen: set[str] = set()


def valid(timestamp: str, body: bytes, signature: str) -> bool:
    """HMAC-SHA256 of "TIMESTAMP." + body, and a timestamp within 5 minutes (no replays)."""
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > 300:
        return False
    expected = "sha256=" + hmac.new(SECRET, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(min(int(self.headers.get("Content-Length", 0)), 1 << 20))
        if not valid(self.headers.get("X-Cmsv6-Timestamp", ""), body,
                     self.headers.get("X-Cmsv6-Signature", "")):
            self.send_response(401)  # not from cmsv6 (or replayed): it will not retry forever
            self.end_headers()
            return
        self.send_response(204)  # answer first and fast; work afterwards (or queue it)
        self.end_headers()
        event = json.loads(body)
        if event["id"] in seen:  # delivered at least once: a repeat is normal
            return
        seen.add(event["id"])
        data = event["data"]
        subject = data["alarm"]["kind"] + " on " + data["alarm"]["phone"] if "alarm" in data else data.get("phone")
        print(f"{event['event']} {subject} at {event['time']} (id {event['id']})", flush=True)

    def log_message(self, *args: object) -> None:  # quiet
        pass


server = HTTPServer(("127.0.0.1", port), Handler)
print(f"webhook {hook['id']} registered; listening on port {port}", flush=True)
try:
    while count is None or len(seen) < count:
        server.handle_request()
finally:
    call("DELETE", f"/api/v1/webhooks/{hook['id']}", token=token)  # tidy up
    print(f"webhook {hook['id']} removed", flush=True)
