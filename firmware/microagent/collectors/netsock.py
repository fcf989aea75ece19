# NetworkActivity on a board: the agent puts a stand-in for the `socket` module into
# sys.modules before the application imports it, so every socket the application opens is a
# TrackedSocket. It counts bytes in the stream and socket methods (send, recv, write, read,
# readinto, sendto, recvfrom ...) and reports each connection once per window through the
# engine's entry points (record_connection_packed, record_dns_packed,
# record_unsupported_connection), exactly as replay does: the once-per-window cache-full warning,
# string caps and IPv6 counting are the engine's.
#
# Why a wrapper object and not a subclass: MicroPython's native socket type cannot be extended
# with Python methods that native code (ssl, select, asyncio) would call. TrackedSocket is an
# io.IOBase, so ssl.wrap_socket(), select.poll() and asyncio streams use it through the stream
# protocol (readinto/write/ioctl) and the TLS bytes are counted too.
#
# MicroPython sockets have no getsockname(): an outbound connection's local port is reported as
# 0 (unknown), its local address as the board's address (127.0.0.1 towards loopback).
# Counting a send or receive allocates nothing: the counters are small ints on the socket, reset
# every window, and reporting a connection records into the preallocated cache.
import io
import select
import sys
from array import array

from microagent.clock import ticks_diff, ticks_ms
from microagent.events import parse_ipv4

_real = __import__("socket")

TCP = 0  # events.PROTOCOLS index
UDP = 1
INBOUND = 1  # events.DIRECTIONS index
OUTBOUND = 2
_AF_INET = getattr(_real, "AF_INET", 2)
_SOCK_DGRAM = getattr(_real, "SOCK_DGRAM", 2)
# MicroPython stream ioctl requests (py/stream.h).
_MP_STREAM_POLL = 3
_MP_STREAM_CLOSE = 4
_MP_STREAM_GET_FILENO = 10
_LOOPBACK_HIGH = 127 << 8
PENDING_LOOKUPS = 4  # name lookups kept while a window flushes
PENDING_CONNECTIONS = 16  # connection reports kept while a window flushes (a UDP socket's peers)


def sockaddr_port(addr, halves):
    """Port of socket address ADDR (sockaddr bytes on the unix port, (host, port) on lwip ports
    and CPython) with its IPv4 address as 16-bit halves in HALVES[0:2]; -1 when not IPv4.
    Allocates nothing."""
    if isinstance(addr, tuple):
        if len(addr) != 2 or not parse_ipv4(addr[0], halves, 0):
            return -1
        return addr[1]
    if len(addr) < 8 or addr[0] | (addr[1] << 8) != _AF_INET:
        return -1
    halves[0] = (addr[4] << 8) | addr[5]
    halves[1] = (addr[6] << 8) | addr[7]
    return (addr[2] << 8) | addr[3]


class Tracker:
    """The application's open sockets (a fixed table of CAPACITY) and where their reports go.

    ENGINE is None until the agent's engine exists; sockets opened before are reported at the
    first sweep. While the agent flushes a window it pauses the tracker: ACTIVE is then None,
    sockets keep their counts for the next window and name lookups wait in a small table
    (PENDING_LOOKUPS; one more is counted as a DNS event lost to a full cache). LOCAL_HIGH/LOW:
    the board's IPv4 address as 16-bit halves (0.0.0.0 when unknown), reported as the local
    address of outbound connections.
    """

    def __init__(self, capacity):
        self.sockets = [None] * capacity
        self.engine = None
        self.active = None  # the engine, or None while there is none or the tracker is paused
        self.paused = False
        self.pending_names = [None] * PENDING_LOOKUPS
        self.pending_halves = array("H", bytes(4 * PENDING_LOOKUPS))
        self.pending = 0
        self.pending_lost = 0
        # Connection reports that could not wait on their socket during a flush (see _settle):
        # local high, low, port, remote high, low, port per entry; beyond the table, counted lost.
        self.pending_connections = array("H", bytes(12 * PENDING_CONNECTIONS))
        self.pending_bytes = array("I", bytes(8 * PENDING_CONNECTIONS))  # in, out
        self.pending_kind = bytearray(PENDING_CONNECTIONS)  # protocol << 2 | direction
        self.pending_count = 0
        self.connections_lost = 0
        self.window_start = ticks_ms()
        self.local_high = 0
        self.local_low = 0
        self.untracked = 0  # sockets opened while the table was full: counted, bytes unknown
        self.halves = array("H", [0, 0])

    def attach(self, engine, window_start_ticks):
        self.engine = engine
        self.active = None if self.paused else engine
        self.window_start = window_start_ticks

    def pause(self):
        self.paused = True
        self.active = None

    def resume(self):
        """Records the lookups made while paused into the (new) window."""
        self.paused = False
        self.active = engine = self.engine
        if engine is not None:
            for i in range(self.pending):
                engine.record_dns_packed(self.pending_names[i], self.pending_halves[2 * i],
                                         self.pending_halves[2 * i + 1])
            engine.dns.dropped += self.pending_lost
            held = self.pending_connections
            for i in range(self.pending_count):
                at = 6 * i
                engine.record_connection_packed(
                    0, self.pending_kind[i] >> 2, held[at], held[at + 1], held[at + 2],
                    held[at + 3], held[at + 4], held[at + 5], self.pending_bytes[2 * i],
                    self.pending_bytes[2 * i + 1], self.pending_kind[i] & 3)
            engine.network.dropped += self.connections_lost
        self.pending_count = 0
        for i in range(self.pending):
            self.pending_names[i] = None
        self.pending = 0
        self.pending_lost = 0
        self.connections_lost = 0

    def lookup(self, host, high, low):
        """A name lookup's IPv4 answer: into the engine, or kept until resume()."""
        if self.active is not None:
            self.active.record_dns_packed(host, high, low)
        elif self.paused and self.engine is not None:
            if self.pending < PENDING_LOOKUPS:
                self.pending_names[self.pending] = host
                self.pending_halves[2 * self.pending] = high
                self.pending_halves[2 * self.pending + 1] = low
                self.pending += 1
            else:
                self.pending_lost += 1

    def set_local_address(self, text):
        if text and parse_ipv4(text, self.halves, 0):
            self.local_high = self.halves[0]
            self.local_low = self.halves[1]

    def add(self, sock):
        sockets = self.sockets
        for i in range(len(sockets)):
            if sockets[i] is None:
                sockets[i] = sock
                return True
        self.untracked += 1
        return False

    def release(self, sock):
        sockets = self.sockets
        for i in range(len(sockets)):
            if sockets[i] is sock:
                sockets[i] = None
                return

    def sweep(self):
        """Reports every tracked socket's activity into the current window (before a flush);
        forgets the closed ones."""
        sockets = self.sockets
        for i in range(len(sockets)):
            sock = sockets[i]
            if sock is not None:
                sock._report()
                if sock._closed:
                    sockets[i] = None

    def new_window(self, window_start_ticks):
        self.window_start = window_start_ticks

    def open_count(self):
        return sum(1 for s in self.sockets if s is not None)


class TrackedSocket(io.IOBase):
    """A socket of the application; behaves as the port's socket, plus byte counts."""

    def __init__(self, af=_AF_INET, type=1, proto=0, _sock=None, _tracker=None):
        self._s = _real.socket(af, type, proto) if _sock is None else _sock
        self._t = _tracker if _tracker is not None else TRACKER
        self._poller = None
        self._closed = False
        self._tracked = False
        self.protocol = UDP if type == _SOCK_DGRAM else TCP
        self.direction = 0
        self.local_high = 0
        self.local_low = 0
        self.local_port = 0
        self.remote_high = 0
        self.remote_low = 0
        self.remote_port = -1  # -1: no peer yet
        self.bytes_in = 0
        self.bytes_out = 0
        self.opened = 0
        self.fresh = False  # a connection not yet reported in the current window

    # ---- peers and reports ------------------------------------------------------------------

    def _set_peer(self, addr, direction):
        """Makes ADDR the connection this socket reports; False when it is not IPv4 (an IPv6
        peer is counted once as an unsupported connection event)."""
        port = sockaddr_port(addr, self._t.halves)
        if port < 0:
            if self.remote_port != -2:
                self.remote_port = -2  # -2: an IPv6 peer, counted
                engine = self._t.active
                if engine is not None:
                    engine.record_unsupported_connection()
            return False
        halves = self._t.halves
        if (port == self.remote_port and halves[0] == self.remote_high
                and halves[1] == self.remote_low):
            return True
        if self.remote_port >= 0:
            self._settle()  # a datagram socket turned to another peer: the last one is done
        self.remote_high = halves[0]
        self.remote_low = halves[1]
        self.remote_port = port
        if self.direction == 0:
            self.direction = direction
        if self.local_port == 0 or direction == OUTBOUND:
            self._local_towards(self.remote_high)
        self.opened = ticks_ms()
        self.fresh = True
        if not self._tracked:
            self._tracked = self._t.add(self)
            if not self._tracked:
                self._settle()  # no room to follow it: at least the connection is counted
        return True

    def _local_towards(self, remote_high):
        if remote_high & 0xFF00 == _LOOPBACK_HIGH:
            self.local_high = _LOOPBACK_HIGH
            self.local_low = 1
        else:
            self.local_high = self._t.local_high
            self.local_low = self._t.local_low
        getsockname = getattr(self._s, "getsockname", None)  # CPython only
        if getsockname is not None and self.direction == OUTBOUND:
            try:
                self.local_port = getsockname()[1]
            except OSError:
                pass

    def _settle(self):
        # Reports now a connection whose state is about to go. While a window flushes it waits
        # in the tracker's small table for the next window; beyond it, it is counted as lost to
        # the network cache (DroppedEvents), never dropped silently.
        tracker = self._t
        if tracker.active is None and tracker.paused and tracker.engine is not None \
                and self.remote_port >= 0 and (self.fresh or self.bytes_in or self.bytes_out):
            i = tracker.pending_count
            if i < PENDING_CONNECTIONS:
                held = tracker.pending_connections
                at = 6 * i
                held[at] = self.local_high
                held[at + 1] = self.local_low
                held[at + 2] = self.local_port
                held[at + 3] = self.remote_high
                held[at + 4] = self.remote_low
                held[at + 5] = self.remote_port
                tracker.pending_bytes[2 * i] = self.bytes_in
                tracker.pending_bytes[2 * i + 1] = self.bytes_out
                tracker.pending_kind[i] = (self.protocol << 2) | self.direction
                tracker.pending_count = i + 1
            else:
                tracker.connections_lost += 1
            self.fresh = False
            self.bytes_in = 0
            self.bytes_out = 0
            return
        self._report()

    def _report(self):
        # Records this window's activity into the engine: once per window per connection.
        engine = self._t.active
        if engine is None or self.remote_port < 0:
            return
        if not (self.fresh or self.bytes_in or self.bytes_out):
            return
        offset = ticks_diff(self.opened, self._t.window_start)
        engine.record_connection_packed(offset if offset > 0 else 0, self.protocol,
                                        self.local_high, self.local_low, self.local_port,
                                        self.remote_high, self.remote_low, self.remote_port,
                                        self.bytes_in, self.bytes_out, self.direction)
        self.bytes_in = 0
        self.bytes_out = 0
        self.fresh = False

    # ---- connection set-up ------------------------------------------------------------------

    def connect(self, addr):
        try:
            self._s.connect(addr)
        except OSError as exc:
            # A non-blocking connect (asyncio) is in progress: the connection is being made.
            if exc.args and exc.args[0] in (115, 119, 36):  # EINPROGRESS on Linux/lwip/macOS
                self._set_peer(addr, OUTBOUND)
            raise
        self._set_peer(addr, OUTBOUND)

    def bind(self, addr):
        self._s.bind(addr)
        port = sockaddr_port(addr, self._t.halves)
        if port >= 0:
            self.local_port = port
            self.local_high = self._t.halves[0]
            self.local_low = self._t.halves[1]

    def listen(self, backlog=2):
        self._s.listen(backlog)

    def accept(self):
        sock, addr = self._s.accept()
        accepted = TrackedSocket(_AF_INET, 1, 0, sock, self._t)
        accepted.local_port = self.local_port
        accepted.local_high = self.local_high
        accepted.local_low = self.local_low
        accepted._set_peer(addr, INBOUND)
        if self.local_high == 0 and self.local_low == 0:
            accepted._local_towards(accepted.remote_high)
        return accepted, addr

    # ---- data: the hot path, no allocation beyond what the real call makes --------------------

    def send(self, data):
        n = self._s.send(data)
        self.bytes_out += n
        return n

    def sendall(self, data):
        self._s.sendall(data)
        self.bytes_out += len(data)

    def write(self, data, *length):
        n = self._s.write(data, *length)
        if n:
            self.bytes_out += n
        return n

    def recv(self, size):
        data = self._s.recv(size)
        self.bytes_in += len(data)
        return data

    def read(self, *size):
        data = self._s.read(*size)
        if data:
            self.bytes_in += len(data)
        return data

    def readinto(self, buf, *size):
        n = self._s.readinto(buf, *size)
        if n:
            self.bytes_in += n
        return n

    def readline(self):
        line = self._s.readline()
        if line:
            self.bytes_in += len(line)
        return line

    def sendto(self, data, addr):
        n = self._s.sendto(data, addr)
        if self._set_peer(addr, OUTBOUND):
            self.bytes_out += n if n is not None else len(data)
        return n

    def recvfrom(self, size):
        data, addr = self._s.recvfrom(size)
        if self._set_peer(addr, INBOUND):
            self.bytes_in += len(data)
        return data, addr

    # ---- everything else as the port's socket -----------------------------------------------

    def ioctl(self, request, arg):
        # select.poll() and asyncio reach the socket here; the port's socket has no Python-level
        # ioctl, so readiness comes from a poller on it, allocated on first use.
        if request == _MP_STREAM_POLL:
            if self._poller is None:
                self._poller = select.poll()
                self._poller.register(self._s, select.POLLIN | select.POLLOUT)
            for entry in self._poller.ipoll(0):
                return entry[1] & (arg | select.POLLERR | select.POLLHUP)
            return 0
        if request == _MP_STREAM_CLOSE:
            self.close()
            return 0
        if request == _MP_STREAM_GET_FILENO:
            return self._s.fileno()
        return -1

    def setblocking(self, flag):
        self._s.setblocking(flag)

    def settimeout(self, value):
        self._s.settimeout(value)

    def setsockopt(self, level, option, value):
        self._s.setsockopt(level, option, value)

    def fileno(self):
        return self._s.fileno()

    def makefile(self, *args, **kwargs):
        return self

    def close(self):
        if self._closed:
            return
        self._closed = True
        self._s.close()
        if self._t.active is not None:
            self._report()
            if self._tracked:
                self._t.release(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __getattr__(self, name):
        # Methods a port has that are not wrapped here (getsockname on CPython, ...).
        return getattr(self._s, name)

    def __repr__(self):
        return "<TrackedSocket %r>" % (self._s,)


def getaddrinfo(host, port, af=0, type=0, proto=0, flags=0):
    """The port's getaddrinfo(); each distinct IPv4 address it returns is a DNS event."""
    result = _real.getaddrinfo(host, port, af, type, proto, flags)
    if TRACKER.engine is None or not isinstance(host, str) or parse_ipv4(host, TRACKER.halves, 0):
        return result  # an address literal is no name lookup
    seen_high = -1
    seen_low = -1
    for entry in result:
        if entry[0] != _AF_INET or sockaddr_port(entry[-1], TRACKER.halves) < 0:
            continue
        high = TRACKER.halves[0]
        low = TRACKER.halves[1]
        if high == seen_high and low == seen_low:
            continue  # the same address for another socket type
        seen_high = high
        seen_low = low
        TRACKER.lookup(host, high, low)
    return result


class _SocketModule:
    """What `import socket` gives the application once installed: the port's module with
    socket and getaddrinfo replaced."""


TRACKER = Tracker(0)
_installed = None


def install(capacity):
    """Puts the tracking `socket` module into sys.modules (modules that already imported socket,
    such as the agent's own MQTT client, keep the real one); returns the Tracker."""
    global TRACKER, _installed
    TRACKER = Tracker(capacity)
    if _installed is None:
        module = _SocketModule()
        for name in dir(_real):
            if not name.startswith("__"):
                setattr(module, name, getattr(_real, name))
        module.socket = TrackedSocket
        module.getaddrinfo = getaddrinfo
        module.real = _real
        _installed = module
    sys.modules["socket"] = _installed
    return TRACKER


def uninstall():
    sys.modules["socket"] = _real
