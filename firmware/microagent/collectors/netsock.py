# NetworkActivity on a board: the agent puts a stand-in for the `socket` module into
# sys.modules before the application imports it, so every socket the application opens is a
# TrackedSocket. It counts bytes in the stream and socket methods (send, recv, write, read,
# readinto, sendto, recvfrom ...) and reports each connection once per window through the
# engine's entry points (record_connection_packed and record_dns_packed for IPv4,
# record_connection_packed6 and record_dns_packed6 for IPv6, record_unsupported_connection for
# a peer of neither family), exactly as replay does: the once-per-window cache-full warning,
# string caps and the IPv6 cache are the engine's. An IPv4-mapped peer of a dual-stack socket
# (::ffff:a.b.c.d) is the IPv4 connection.
#
# Why a wrapper object and not a subclass: MicroPython's native socket type cannot be extended
# with Python methods that native code (ssl, select, asyncio) would call. TrackedSocket is an
# io.IOBase, so ssl.wrap_socket(), select.poll() and asyncio streams use it through the stream
# protocol (readinto/write/ioctl) and the TLS bytes are counted too.
#
# MicroPython sockets have no getsockname(): an outbound connection's local port is reported as
# 0 (unknown), its local address as the board's address of the peer's family (127.0.0.1 or ::1
# towards loopback).
# Counting a send or receive allocates nothing: the counters are small ints on the socket, reset
# every window, and reporting a connection records into the preallocated cache. An IPv6
# connection's addresses are eight 16-bit groups in two small arrays of its socket, allocated
# with its first IPv6 peer and reused for the next ones.
import io
import select
import sys
from array import array

from microagent.clock import ticks_diff, ticks_ms
from microagent.events import parse_address

_real = __import__("socket")

TCP = 0  # events.PROTOCOLS index
UDP = 1
INBOUND = 1  # events.DIRECTIONS index
OUTBOUND = 2
_AF_INET = getattr(_real, "AF_INET", 2)
_AF_INET6 = getattr(_real, "AF_INET6", 10)  # Linux's value: the unix port's sockaddr_in6
_SOCK_DGRAM = getattr(_real, "SOCK_DGRAM", 2)
# MicroPython stream ioctl requests (py/stream.h).
_MP_STREAM_POLL = 3
_MP_STREAM_CLOSE = 4
_MP_STREAM_GET_FILENO = 10
_LOOPBACK_HIGH = 127 << 8
PENDING_LOOKUPS = 4  # name lookups kept while a window flushes
PENDING_CONNECTIONS = 16  # connection reports kept while a window flushes (a UDP socket's peers)
IPV4 = 2  # parse_address's counts of 16-bit groups
IPV6 = 8
PORT = 8  # where sockaddr_parse puts the port
PENDING_CONNECTIONS6 = 4  # of which IPv6 ones (their addresses take 32 bytes each)
_HELD_IPV6 = 16  # pending_kind's bit for an IPv6 connection


def sockaddr_parse(addr, halves):
    """Reads socket address ADDR (sockaddr bytes on the unix port, (host, port[, flowinfo,
    scope_id]) tuples on lwip ports and CPython): IPV4 with the address's 16-bit halves in
    HALVES[0:2], IPV6 with its eight groups in HALVES[0:8] (an IPv4-mapped one is IPV4), 0 when
    it is neither; the port goes to HALVES[PORT]. Allocates nothing."""
    if isinstance(addr, tuple):
        if len(addr) < 2 or not isinstance(addr[0], str):
            return 0
        n = parse_address(addr[0], halves, 0)
        if n:
            halves[PORT] = addr[1]
        return n
    if len(addr) < 8:
        return 0
    family = addr[0] | (addr[1] << 8)
    if family == _AF_INET:
        halves[0] = (addr[4] << 8) | addr[5]
        halves[1] = (addr[6] << 8) | addr[7]
        halves[PORT] = (addr[2] << 8) | addr[3]
        return IPV4
    if family != _AF_INET6 or len(addr) < 24:
        return 0
    for i in range(8):  # sin6_addr follows the port and the flow label
        halves[i] = (addr[8 + 2 * i] << 8) | addr[9 + 2 * i]
    halves[PORT] = (addr[2] << 8) | addr[3]
    if _is_mapped(halves):
        halves[0] = halves[6]
        halves[1] = halves[7]
        return IPV4
    return IPV6


def _is_mapped(groups):
    return (groups[0] == 0 and groups[1] == 0 and groups[2] == 0 and groups[3] == 0
            and groups[4] == 0 and groups[5] == 0xFFFF)


def _is_loopback6(groups):
    return (groups[0] == 0 and groups[1] == 0 and groups[2] == 0 and groups[3] == 0
            and groups[4] == 0 and groups[5] == 0 and groups[6] == 0 and groups[7] == 1)


def _same(a, b):
    for i in range(8):
        if a[i] != b[i]:
            return False
    return True


def _copy(source, at, target, to):
    for i in range(8):
        target[to + i] = source[at + i]


class Tracker:
    """The application's open sockets (a fixed table of CAPACITY) and where their reports go.

    ENGINE is None until the agent's engine exists; sockets opened before are reported at the
    first sweep. While the agent flushes a window it pauses the tracker: ACTIVE is then None,
    sockets keep their counts for the next window and name lookups wait in a small table
    (PENDING_LOOKUPS; one more is counted as a DNS event lost to a full cache). LOCAL_HIGH/LOW:
    the board's IPv4 address as 16-bit halves (0.0.0.0 when unknown), LOCAL6 its IPv6 address
    as eight groups (:: when unknown), reported as the local address of outbound connections.
    """

    def __init__(self, capacity):
        self.sockets = [None] * capacity
        self.engine = None
        self.active = None  # the engine, or None while there is none or the tracker is paused
        self.paused = False
        self.pending_names = [None] * PENDING_LOOKUPS
        self.pending_halves = array("H", bytes(16 * PENDING_LOOKUPS))  # 8 groups per answer
        self.pending_family = bytearray(PENDING_LOOKUPS)  # IPV4 or IPV6
        self.pending = 0
        self.pending_lost = 0
        # Connection reports that could not wait on their socket during a flush (see _settle):
        # local high, low, port, remote high, low, port per entry; an IPv6 entry has its index in
        # PENDING_ADDRESSES6 (local groups, remote groups) in place of the local high. Beyond the
        # tables, counted lost.
        self.pending_connections = array("H", bytes(12 * PENDING_CONNECTIONS))
        self.pending_addresses6 = None  # the IPv6 tables: see ipv6_tables
        self.pending_bytes = array("I", bytes(8 * PENDING_CONNECTIONS))  # in, out
        # protocol << 2 | direction, | _HELD_IPV6 for an IPv6 connection
        self.pending_kind = bytearray(PENDING_CONNECTIONS)
        self.pending_count = 0
        self.pending_count6 = 0
        self.connections_lost = 0
        self.connections_lost6 = 0
        self.window_start = ticks_ms()
        self.local_high = 0
        self.local_low = 0
        self.local6 = None
        self.untracked = 0  # sockets opened while the table was full: counted, bytes unknown
        self.halves = array("H", bytes(18))  # sockaddr_parse's groups and port
        self.seen6 = None  # getaddrinfo's last IPv6 answer
        # A held IPv6 report's addresses, copied out of the table to be recorded
        self.held_local = None
        self.held_remote = None

    def ipv6_tables(self):
        """Allocates the IPv6 tables once, with the first IPv6 peer, answer or address: a board
        that never sees IPv6 keeps their few hundred bytes (its heap budget has no more)."""
        if self.local6 is None:
            self.local6 = array("H", bytes(16))
            self.seen6 = array("H", bytes(16))
            self.held_local = array("H", bytes(16))
            self.held_remote = array("H", bytes(16))
            self.pending_addresses6 = array("H", bytes(32 * PENDING_CONNECTIONS6))

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
            answers = self.pending_halves
            for i in range(self.pending):
                if self.pending_family[i] == IPV6:
                    _copy(answers, 8 * i, self.held_remote, 0)
                    engine.record_dns_packed6(self.pending_names[i], self.held_remote)
                else:
                    engine.record_dns_packed(self.pending_names[i], answers[8 * i],
                                             answers[8 * i + 1])
            engine.dns.dropped += self.pending_lost
            held = self.pending_connections
            for i in range(self.pending_count):
                at = 6 * i
                kind = self.pending_kind[i]
                if kind & _HELD_IPV6:
                    _copy(self.pending_addresses6, 16 * held[at], self.held_local, 0)
                    _copy(self.pending_addresses6, 16 * held[at] + 8, self.held_remote, 0)
                    engine.record_connection_packed6(
                        0, (kind & 15) >> 2, self.held_local, held[at + 2], self.held_remote,
                        held[at + 5], self.pending_bytes[2 * i], self.pending_bytes[2 * i + 1],
                        kind & 3)
                else:
                    engine.record_connection_packed(
                        0, kind >> 2, held[at], held[at + 1], held[at + 2], held[at + 3],
                        held[at + 4], held[at + 5], self.pending_bytes[2 * i],
                        self.pending_bytes[2 * i + 1], kind & 3)
            engine.network.dropped += self.connections_lost
            if engine.network6 is not None:
                engine.network6.dropped += self.connections_lost6
            else:
                for _ in range(self.connections_lost6):  # no IPv6 cache: unsupported anyway
                    engine.record_unsupported_connection()
        self.pending_count = 0
        self.pending_count6 = 0
        for i in range(self.pending):
            self.pending_names[i] = None
        self.pending = 0
        self.pending_lost = 0
        self.connections_lost = 0
        self.connections_lost6 = 0

    def lookup(self, host, high, low):
        """A name lookup's IPv4 answer: into the engine, or kept until resume()."""
        if self.active is not None:
            self.active.record_dns_packed(host, high, low)
        elif self._pend(host, IPV4):
            self.pending_halves[8 * (self.pending - 1)] = high
            self.pending_halves[8 * (self.pending - 1) + 1] = low

    def lookup6(self, host, groups):
        """A name lookup's IPv6 answer (eight groups at GROUPS[0:8], the caller's): into the
        engine, or kept until resume()."""
        if self.active is not None:
            self.active.record_dns_packed6(host, groups)
        elif self._pend(host, IPV6):
            _copy(groups, 0, self.pending_halves, 8 * (self.pending - 1))

    def _pend(self, host, family):
        # A lookup made while paused takes the next row of the pending table, if any.
        if not (self.paused and self.engine is not None):
            return False
        if self.pending >= PENDING_LOOKUPS:
            self.pending_lost += 1
            return False
        self.pending_names[self.pending] = host
        self.pending_family[self.pending] = family
        self.pending += 1
        return True

    def set_local_address(self, text):
        """The board's address of either family (an IPv6 one is kept beside the IPv4 one)."""
        n = parse_address(text, self.halves, 0) if text else 0
        if n == IPV4:
            self.local_high = self.halves[0]
            self.local_low = self.halves[1]
        elif n == IPV6:
            self.ipv6_tables()
            _copy(self.halves, 0, self.local6, 0)

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
        self.ipv6 = False  # the peer is IPv6: the addresses are LOCAL6 and REMOTE6
        self.local6 = None  # eight groups each, allocated with the first IPv6 peer or bind
        self.remote6 = None
        self.bytes_in = 0
        self.bytes_out = 0
        self.opened = 0
        self.fresh = False  # a connection not yet reported in the current window

    # ---- peers and reports ------------------------------------------------------------------

    def _set_peer(self, addr, direction):
        """Makes ADDR the connection this socket reports; False when it is neither IPv4 nor IPv6
        (counted once as an unsupported connection event)."""
        halves = self._t.halves
        n = sockaddr_parse(addr, halves)
        if not n:
            if self.remote_port != -2:
                self.remote_port = -2  # -2: a peer of no known family, counted
                engine = self._t.active
                if engine is not None:
                    engine.record_unsupported_connection()
            return False
        port = halves[PORT]
        if port == self.remote_port and (n == IPV6) == self.ipv6 and (
                _same(halves, self.remote6) if self.ipv6 else
                halves[0] == self.remote_high and halves[1] == self.remote_low):
            return True
        if self.remote_port >= 0:
            self._settle()  # a datagram socket turned to another peer: the last one is done
        self.ipv6 = n == IPV6
        if self.ipv6:
            self._t.ipv6_tables()
            if self.remote6 is None:
                self.remote6 = array("H", bytes(16))
            _copy(halves, 0, self.remote6, 0)
        else:
            self.remote_high = halves[0]
            self.remote_low = halves[1]
        self.remote_port = port
        if self.direction == 0:
            self.direction = direction
        if self.local_port == 0 or direction == OUTBOUND or (self.ipv6 and self.local6 is None):
            self._local_towards()
        self.opened = ticks_ms()
        self.fresh = True
        if not self._tracked:
            self._tracked = self._t.add(self)
            if not self._tracked:
                self._settle()  # no room to follow it: at least the connection is counted
        return True

    def _local_towards(self):
        # The board's address of the peer's family, or loopback towards loopback.
        if self.ipv6:
            if self.local6 is None:
                self.local6 = array("H", bytes(16))
            _copy(self._t.local6, 0, self.local6, 0)
            if _is_loopback6(self.remote6):
                self.local6[7] = 1  # ::1 (the board's address is never loopback)
                for i in range(7):
                    self.local6[i] = 0
        elif self.remote_high & 0xFF00 == _LOOPBACK_HIGH:
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
            i6 = tracker.pending_count6
            if i < PENDING_CONNECTIONS and (not self.ipv6 or i6 < PENDING_CONNECTIONS6):
                held = tracker.pending_connections
                at = 6 * i
                kind = (self.protocol << 2) | self.direction
                if self.ipv6:
                    held[at] = i6
                    _copy(self.local6, 0, tracker.pending_addresses6, 16 * i6)
                    _copy(self.remote6, 0, tracker.pending_addresses6, 16 * i6 + 8)
                    tracker.pending_count6 = i6 + 1
                    kind |= _HELD_IPV6
                else:
                    held[at] = self.local_high
                    held[at + 1] = self.local_low
                    held[at + 3] = self.remote_high
                    held[at + 4] = self.remote_low
                held[at + 2] = self.local_port
                held[at + 5] = self.remote_port
                tracker.pending_bytes[2 * i] = self.bytes_in
                tracker.pending_bytes[2 * i + 1] = self.bytes_out
                tracker.pending_kind[i] = kind
                tracker.pending_count = i + 1
            elif self.ipv6:
                tracker.connections_lost6 += 1
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
        if self.ipv6:
            engine.record_connection_packed6(offset if offset > 0 else 0, self.protocol,
                                             self.local6, self.local_port, self.remote6,
                                             self.remote_port, self.bytes_in, self.bytes_out,
                                             self.direction)
        else:
            engine.record_connection_packed(offset if offset > 0 else 0, self.protocol,
                                            self.local_high, self.local_low, self.local_port,
                                            self.remote_high, self.remote_low,
                                            self.remote_port, self.bytes_in, self.bytes_out,
                                            self.direction)
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
        halves = self._t.halves
        n = sockaddr_parse(addr, halves)
        if n:
            self.local_port = halves[PORT]
        if n == IPV4:
            self.local_high = halves[0]
            self.local_low = halves[1]
        elif n == IPV6:
            if self.local6 is None:
                self.local6 = array("H", bytes(16))
            _copy(halves, 0, self.local6, 0)

    def listen(self, backlog=2):
        self._s.listen(backlog)

    def accept(self):
        sock, addr = self._s.accept()
        accepted = TrackedSocket(_AF_INET, 1, 0, sock, self._t)
        accepted.local_port = self.local_port
        accepted.local_high = self.local_high
        accepted.local_low = self.local_low
        accepted._set_peer(addr, INBOUND)
        if accepted.ipv6:
            # the listener's bound address, unless it listens on every address (::)
            if self.local6 is not None and not _same(self.local6, _ANY6):
                if accepted.local6 is None:
                    accepted.local6 = array("H", bytes(16))
                _copy(self.local6, 0, accepted.local6, 0)
            else:
                accepted._local_towards()
        elif self.local_high == 0 and self.local_low == 0:
            accepted._local_towards()
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
    """The port's getaddrinfo(); each distinct address it returns (A or AAAA answer) is a DNS
    event."""
    result = _real.getaddrinfo(host, port, af, type, proto, flags)
    if TRACKER.engine is not None and isinstance(host, str) \
            and not parse_address(host, TRACKER.halves, 0):  # a literal is no name lookup
        record_answers(host, result)
    return result


def record_answers(host, result):
    """Records the distinct addresses of getaddrinfo RESULT as answers for HOST."""
    tracker = TRACKER
    halves = tracker.halves
    seen_high = -1
    seen_low = -1
    seen6 = False
    for entry in result:
        if entry[0] != _AF_INET and entry[0] != _AF_INET6:
            continue
        n = sockaddr_parse(entry[-1], halves)
        if n == IPV4:
            high = halves[0]
            low = halves[1]
            if high == seen_high and low == seen_low:
                continue  # the same address for another socket type
            seen_high = high
            seen_low = low
            tracker.lookup(host, high, low)
        elif n == IPV6:
            if seen6 and _same(halves, tracker.seen6):
                continue
            seen6 = True
            tracker.ipv6_tables()
            _copy(halves, 0, tracker.seen6, 0)
            tracker.lookup6(host, halves)


class _SocketModule:
    """What `import socket` gives the application once installed: the port's module with
    socket and getaddrinfo replaced."""


_ANY6 = array("H", bytes(16))  # ::
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
