"""The console's HTTP server: GET only, each page rendered on request by a site: HubSite (the
emulator's store, read into a FleetModel) or store_site.StoreSite (the cloud store).

No client can tie it up: one thread (the gate) holds every connection until its request head
has arrived, and closes one that has not sent it within IDLE_TIMEOUT; only complete requests go
to a fixed pool of WORKERS threads, through a bounded queue. So idle or slow connections cost a
socket each, not a thread, and a fresh client is served while hundreds of them wait. Past
MAX_HELD connections the oldest is closed; a request that finds the queue full is answered 503.
"""
import collections
import http.server
import io
import queue
import selectors
import socket
import sys
import threading
import time
import urllib.parse

from hub_emulator.printable import printable

from host_sim.cloud.console import pages
from host_sim.metering import TIERS

IDLE_TIMEOUT = 30.0      # seconds a connection may take to send its request, or to read the answer
WORKERS = 8              # threads rendering pages
QUEUE_SIZE = 64          # complete requests waiting for a worker
MAX_HELD = 512           # connections held at once while their request arrives
MAX_HEAD = 64 * 1024     # bytes of request line and headers (http.server refuses longer lines)
LISTEN_BACKLOG = 256     # socketserver's default is 5
SERVER_NAME = "microagent-console"
# Nothing on these pages comes from anywhere else, and no other site may frame them.
CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; "
       "frame-ancestors 'none'")
BUSY = (b"HTTP/1.0 503 Service Unavailable\r\nServer: " + SERVER_NAME.encode()
        + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def _stderr_line(line):
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


class ConsoleServer(http.server.HTTPServer):
    """LOG: each request in one line (None: not logged); ERROR_LOG: each failure in one line,
    never a traceback (default: stderr)."""

    request_queue_size = LISTEN_BACKLOG

    def __init__(self, address, site, log=None, error_log=None, idle_timeout=IDLE_TIMEOUT,
                 workers=WORKERS, max_held=MAX_HELD):
        self.site = site
        self.log = log or (lambda line: None)
        self.error_log = error_log or _stderr_line
        self.idle_timeout = idle_timeout
        self.max_held = max_held
        super().__init__(address, _Handler)
        self._requests = queue.Queue(QUEUE_SIZE)
        self._arrived = queue.SimpleQueue()           # accepted connections for the gate
        self._wake_gate, self._gate_wakes = socket.socketpair()
        self._closing = threading.Event()
        self._threads = [threading.Thread(target=self._gate, name="console gate", daemon=True)]
        self._threads += [threading.Thread(target=self._work, name="console worker %d" % n, daemon=True)
                          for n in range(workers)]
        for thread in self._threads:
            thread.start()

    def process_request(self, request, client_address):
        """Called by serve_forever for each accepted connection: over to the gate."""
        self._arrived.put((request, client_address))
        self._wake_gate.send(b"\0")

    def _gate(self):
        selector = selectors.DefaultSelector()
        selector.register(self._gate_wakes, selectors.EVENT_READ)
        held = collections.OrderedDict()   # socket -> [address, head so far, deadline], oldest first
        while not self._closing.is_set():
            now = time.monotonic()
            timeout = min((entry[2] for entry in held.values()), default=now + 1) - now
            for key, _ in selector.select(max(0.0, timeout)):
                if key.fileobj is self._gate_wakes:
                    self._gate_wakes.recv(4096)
                    self._hold(selector, held)
                else:
                    self._read_head(selector, held, key.fileobj)
            now = time.monotonic()
            for sock in [sock for sock, entry in held.items() if entry[2] <= now]:
                self._drop(selector, held, sock)    # idle: no complete request in time
        for sock in list(held):
            self._drop(selector, held, sock)
        selector.close()

    def _hold(self, selector, held):
        while True:
            try:
                sock, address = self._arrived.get_nowait()
            except queue.Empty:
                return
            while len(held) >= self.max_held:
                self._drop(selector, held, next(iter(held)))
            sock.setblocking(False)
            held[sock] = [address, b"", time.monotonic() + self.idle_timeout]
            selector.register(sock, selectors.EVENT_READ)

    def _read_head(self, selector, held, sock):
        try:
            data = sock.recv(8192)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(selector, held, sock)
            return
        entry = held[sock]
        entry[1] += data
        if b"\r\n\r\n" not in entry[1] and b"\n\n" not in entry[1] and len(entry[1]) < MAX_HEAD:
            return
        selector.unregister(sock)
        del held[sock]
        try:
            self._requests.put_nowait((sock, entry[0], entry[1]))
        except queue.Full:
            try:
                sock.send(BUSY)
            except OSError:
                pass
            self.shutdown_request(sock)

    def _drop(self, selector, held, sock):
        selector.unregister(sock)
        del held[sock]
        self.shutdown_request(sock)

    def _work(self):
        while True:
            item = self._requests.get()
            if item is None:
                return
            sock, address, head = item
            try:
                sock.setblocking(True)
                _Handler(sock, address, self, head)
            except Exception as exc:
                self.handle_error(sock, address, exc)
            finally:
                self.shutdown_request(sock)

    def handle_error(self, request, client_address, exc=None):
        exc = exc or sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return   # the client went away or stopped reading: nothing to answer
        self.error_log("console: error answering %s: %s" % (client_address[0], type(exc).__name__))

    def server_close(self):
        self._closing.set()
        self._wake_gate.send(b"\0")
        for _ in self._threads[1:]:
            self._requests.put(None)
        for thread in self._threads:
            thread.join(5)
        self._wake_gate.close()
        self._gate_wakes.close()
        super().server_close()


def tier_and_units(query):
    """(tier, units) of the fleet page's query, or None when they are not valid."""
    tier = query.get("tier", "S1")
    units = query.get("units", "1")
    # isdigit() alone takes "²", which int() refuses
    if tier not in TIERS or not (units.isascii() and units.isdigit()) or not 1 <= int(units) <= 200:
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
    """One request, whose head the gate has read already (HEAD); HTTP/1.0: the connection
    closes after the answer, so no keep-alive holds a worker."""

    # http.server answers a request line it cannot parse as HTTP/0.9 would: a body without a
    # status line or headers (none of the ones below); answer it as HTTP/1.0 instead.
    default_request_version = "HTTP/1.0"

    def __init__(self, request, client_address, server, head=b""):
        self.head = head
        self.timeout = server.idle_timeout   # for writing to a client that does not read
        super().__init__(request, client_address, server)

    def setup(self):
        super().setup()
        self.rfile = io.BytesIO(self.head)

    def version_string(self):
        return SERVER_NAME   # not http.server's "BaseHTTP/0.6 Python/3.x"

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
        try:
            status, body = self.server.site.get(url.path, query)
        except Exception as exc:
            self.server.error_log("console: error answering GET %s: %s" % (
                printable(self.path[:200]), type(exc).__name__))
            status, body = 500, pages.page("internal error", "<p>This page failed; the console "
                                                             "logged why.</p>")
        self._send(status, body, head)

    def _send(self, status, body, head, extra=None):
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(data)

    def end_headers(self):
        # on every answer, http.server's own error pages (400, 414, 501) included
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", CSP)
        super().end_headers()

    def log_message(self, fmt, *args):
        self.server.log("console: %s %s" % (self.address_string(), printable(fmt % args)))
