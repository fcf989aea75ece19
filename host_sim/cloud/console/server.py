"""The console's HTTP server: GET only, each page rendered on request by a site: HubSite (the
emulator's store, read into a FleetModel) or store_site.StoreSite (the cloud store)."""
import http.server
import urllib.parse

from host_sim.cloud.console import pages
from host_sim.metering import TIERS


class ConsoleServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, site, log=None):
        self.site = site
        self.log = log or (lambda line: None)
        super().__init__(address, _Handler)


def tier_and_units(query):
    """(tier, units) of the fleet page's query, or None when they are not valid."""
    tier = query.get("tier", "S1")
    units = query.get("units", "1")
    if tier not in TIERS or not units.isdigit() or not 1 <= int(units) <= 200:
        return None
    return tier, int(units)


BAD_TIER = pages.page("bad request", "<p>tier must be one of %s and units 1..200</p>"
                      % ", ".join(TIERS))


class HubSite:
    """The pages over a FleetModel (the emulator's store, `console --data`)."""

    def __init__(self, model):
        self.model = model

    def get(self, path, query):
        model = self.model
        model.refresh()
        if path == "/":
            chosen = tier_and_units(query)
            if chosen is None:
                return 400, BAD_TIER
            return 200, pages.fleet_page(model, *chosen, page_text=query.get("page"))
        if path == "/device":
            device = query.get("id", "")
            body = pages.device_page(model, device, page_text=query.get("page"))
            if body is None:
                return 404, pages.not_found("no device %r in this hub" % device)
            return 200, body
        return 404, pages.not_found("no page %s" % path)


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
        query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        status, body = self.server.site.get(url.path, query)
        self._send(status, body, head)

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
