"""Load on a running emulator from outside, for the security suite and the bench: half-open
TLS connections (a ClientHello, then silence) and a timed device login over TLS.

    held = HalfOpen(port)           # sockets the server has not authenticated
    held.open(1000)
    seconds, tries = timed_login(hub, "dev1")
    held.closed_by_server()         # how many the server closed
    held.close()
"""
import select
import socket
import ssl
import struct
import time


API_VERSION = "2021-04-12"


def client_hello():
    """The bytes of a TLS ClientHello, as a client opening a connection sends them."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


class HalfOpen:
    """TCP connections to PORT that send a ClientHello and never finish the handshake."""

    def __init__(self, port, host="127.0.0.1"):
        self.address = (host, port)
        self.sockets = []
        self._hello = client_hello()

    def open(self, count, every=None, on_every=None):
        """Opens COUNT more; calls ON_EVERY(number opened) after every EVERY of them."""
        for number in range(1, count + 1):
            sock = socket.create_connection(self.address, timeout=10)
            sock.sendall(self._hello)
            sock.setblocking(False)
            self.sockets.append(sock)
            if every and on_every and number % every == 0:
                on_every(len(self.sockets))

    def closed_by_server(self):
        """How many of the connections the server has closed (EOF or reset)."""
        closed = 0
        for sock in self.sockets:
            if not select.select([sock], [], [], 0)[0]:
                continue
            try:
                while True:
                    if not sock.recv(65536):
                        closed += 1
                        break
            except BlockingIOError:
                pass  # the server's handshake reply, and the connection still open
            except OSError:
                closed += 1
        return closed

    def close(self):
        for sock in self.sockets:
            sock.close()
        self.sockets = []


def _text(value):
    raw = value.encode()
    return struct.pack("!H", len(raw)) + raw


def connect_packet(client_id, username, password, keepalive=60):
    body = (_text("MQTT") + bytes([4, 0xC2]) + struct.pack("!H", keepalive) + _text(client_id)
            + _text(username) + _text(password))
    length, encoded = len(body), bytearray()
    while True:
        byte, length = length & 0x7F, length >> 7
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            return b"\x10" + bytes(encoded) + body


def login(hub, identity, timeout=10):
    """Seconds from TCP connect to CONNACK accepted, over TLS with a SAS token; OSError or
    ssl.SSLError when the connection is lost, ValueError when the CONNACK refuses."""
    context = ssl.create_default_context(cafile=hub.ca)
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", hub.port), timeout=timeout) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            username = "%s/%s/?api-version=%s" % (hub.hub_name, identity, API_VERSION)
            tls.sendall(connect_packet(identity, username, hub.token(identity)))
            connack = b""
            while len(connack) < 4:
                chunk = tls.recv(4 - len(connack))
                if not chunk:
                    raise ConnectionError("closed before CONNACK")
                connack += chunk
            elapsed = time.perf_counter() - started
            if connack != b"\x20\x02\x00\x00":
                raise ValueError("CONNACK %r" % connack)
            tls.sendall(b"\xe0\x00")  # DISCONNECT
    return elapsed


def timed_login(hub, identity, deadline_s=30):
    """(seconds until a login succeeds, tries): a connection the hub closes to admit newer
    ones is tried again, as a device would, until DEADLINE_S."""
    started = time.perf_counter()
    tries = 0
    while True:
        tries += 1
        try:
            login(hub, identity)
            return time.perf_counter() - started, tries
        except (OSError, ssl.SSLError):
            if time.perf_counter() - started > deadline_s:
                raise


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
