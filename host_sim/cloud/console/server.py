"""The console's HTTP server: GET only, pages rendered from the FleetModel on each request."""
import http.server
import urllib.parse

from host_sim.cloud.console import pages
from host_sim.cloud.console.model import TIERS


class ConsoleServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, model, log=None):
        self.model = model
        self.log = log or (lambda line: None)
        super().__init__(address, _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "microagent-console"

    def do_GET(self):
        self._respond(head=False)

    def do_HEAD(self):
        self._respond(head=True)

    def _refuse(self):
        self._send(405, pages.page("read only", "<p>The console is read only.</p>"),
                   head=False, extra={"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse

    def _respond(self, head):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        model = self.server.model
        model.refresh()
        if url.path == "/":
            tier = query.get("tier", ["S1"])[0]
            units = query.get("units", ["1"])[0]
            if tier not in TIERS or not units.isdigit() or not 1 <= int(units) <= 200:
                self._send(400, pages.page("bad request", "<p>tier must be one of %s and units "
                                           "1..200</p>" % ", ".join(TIERS)), head)
                return
            with model.lock:
                body = pages.fleet_page(model, tier, int(units))
            self._send(200, body, head)
        elif url.path == "/device":
            device = query.get("id", [""])[0]
            with model.lock:
                view = model.devices.get(device)
                body = pages.device_page(model, view) if view else None
            if body is None:
                self._send(404, pages.not_found("no device %r in this hub" % device), head)
            else:
                self._send(200, body, head)
        else:
            self._send(404, pages.not_found("no page %s" % url.path), head)

    def _send(self, status, body, head, extra=None):
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        # nothing on these pages comes from anywhere else
        self.send_header("Content-Security-Policy",
                         "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                         "form-action 'self'")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(data)

    def log_message(self, fmt, *args):
        self.server.log("console: %s %s" % (self.address_string(), fmt % args))
