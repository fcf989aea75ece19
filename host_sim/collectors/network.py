"""Network collector: TCP and UDP connections with byte counters from netlink sock_diag.

    NetworkCollector(emit, dump_interval=1.0)

Two kernel sources, both plain netlink (no eBPF, no kernel module):
  * a periodic dump of every IPv4/IPv6 TCP and UDP socket (SOCK_DIAG_BY_FAMILY with
    INET_DIAG_INFO, i.e. struct tcp_info: tcpi_bytes_received = bytes_in,
    tcpi_bytes_acked = bytes_out) catches connections that stay open;
  * the destroy multicast groups (SKNLGRP_INET_TCP_DESTROY, SKNLGRP_INET_UDP_DESTROY and their
    IPv6 twins) report every socket as it is freed, with its final counters, so a connection
    opened and closed between two dumps is still seen, with its bytes.

Each socket (told apart by its kernel cookie) is reported once as a new connection event with the
bytes counted so far; after that, a dump or its destroy notification that finds more bytes
emits a follow-up event for the difference only, marked "continued": True (the engine may add
its bytes without counting a new hit). So every byte is counted once. Sockets already open when
the collector starts are not new connections: only the bytes they move afterwards are reported,
as follow-ups.

Events (docs/spec.md section 1): {"kind": "connection", "t", "protocol": "TCP"|"UDP", "local_address",
"local_port", "remote_address", "remote_port", "bytes_in", "bytes_out", "direction": "in"|"out"}
plus "continued": True on follow-ups. Direction: "in" when the local port is a listening port
(TCP LISTEN socket, or an unconnected bound UDP socket) seen in the last two dumps, or - for
a listener that came and went between two dumps - when the local port is outside the ephemeral port range and
the remote port inside it; else "out". Addresses are canonical text (addresses.py): IPv6 in
RFC 5952 form, and IPv4-mapped IPv6 addresses (::ffff:a.b.c.d, a dual-stack socket's IPv4 peer)
as IPv4.
Only connected sockets are connections: unconnected UDP sockets (sendto() without connect())
carry no remote address in sock_diag and are not reported; UDP sockets have no byte counters in
sock_diag, so UDP bytes are 0. ICMP is not observable through sock_diag.

Driving (see runner.py): open(); fileno() is the destroy-notification socket, read() drains
it; poll() runs a dump, every poll_interval (= dump_interval) seconds. Or start()/stop().
stats: "events"; "lost" = destroy notifications dropped by the kernel (ENOBUFS on our socket,
each overrun counted once, the exact number is unknown); "vanished" = sockets that disappeared
from the dumps without a destroy notification (their last bytes are unknown); "dumps".
"""
import errno
import os
import socket
import struct
import time

from host_sim.collectors import addresses
from host_sim.collectors.runner import EventCollector

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
INET_DIAG_INFO = 2
INET_DIAG_PROTOCOL = 10
SKNLGRP_INET_TCP_DESTROY = 1
SKNLGRP_INET_UDP_DESTROY = 2
SKNLGRP_INET6_TCP_DESTROY = 3
SKNLGRP_INET6_UDP_DESTROY = 4
DESTROY_GROUPS = sum(1 << (group - 1) for group in (
    SKNLGRP_INET_TCP_DESTROY, SKNLGRP_INET_UDP_DESTROY,
    SKNLGRP_INET6_TCP_DESTROY, SKNLGRP_INET6_UDP_DESTROY))

TCP_LISTEN = 10
ALL_STATES = 0xFFFFFFFF

NLMSGHDR = struct.Struct("=IHHII")
REQ_V2 = struct.Struct("=BBBBI48s")                 # family, protocol, ext, pad, states, sockid
DIAG_MSG_SIZE = 72                                 # struct inet_diag_msg
RTATTR = struct.Struct("=HH")
TCPI_BYTES = struct.Struct("=QQ")                  # tcpi_bytes_acked, tcpi_bytes_received
TCPI_BYTES_OFFSET = 120                            # offset of tcpi_bytes_acked in struct tcp_info

PROTOCOLS = {socket.IPPROTO_TCP: "TCP", socket.IPPROTO_UDP: "UDP"}
RECEIVE_BUFFER = 4 * 1024 * 1024
SO_RCVBUFFORCE = 33                          # root may exceed net.core.rmem_max


def align4(n):
    return (n + 3) & ~3


def format_address(family, raw):
    """Canonical text of a sock_diag address (16 bytes, of which IPv4 uses the first 4)."""
    return addresses.from_bytes(raw[:4] if family == socket.AF_INET else raw)


class DiagSocket:
    """One socket as sock_diag describes it."""
    __slots__ = ("family", "protocol", "state", "local_address", "local_port",
                 "remote_address", "remote_port", "cookie", "bytes_in", "bytes_out", "has_info")


def parse_messages(buf, n, protocol_hint=None):
    """Yield (nlmsg_type, DiagSocket or None) for each netlink message in buf[:n]."""
    offset = 0
    while offset + NLMSGHDR.size <= n:
        length, kind, _flags, _seq, _pid = NLMSGHDR.unpack_from(buf, offset)
        if length < NLMSGHDR.size or offset + length > n:
            break
        body = length - NLMSGHDR.size
        if kind == SOCK_DIAG_BY_FAMILY:
            if body >= DIAG_MSG_SIZE:
                yield kind, parse_diag(buf, offset + NLMSGHDR.size, offset + length, protocol_hint)
        elif kind == NLMSG_ERROR:
            if body >= 4:
                yield kind, struct.unpack_from("=i", buf, offset + NLMSGHDR.size)[0]
        else:
            yield kind, None
        offset += align4(length)


def parse_diag(buf, start, end, protocol_hint):
    family, state, _timer, _retrans = struct.unpack_from("=BBBB", buf, start)
    sport, dport = struct.unpack_from(">HH", buf, start + 4)
    src = bytes(buf[start + 8:start + 24])
    dst = bytes(buf[start + 24:start + 40])
    cookie = int.from_bytes(buf[start + 44:start + 52], "little")
    s = DiagSocket()
    s.family, s.state, s.cookie = family, state, cookie
    s.local_address, s.local_port = format_address(family, src), sport
    s.remote_address, s.remote_port = format_address(family, dst), dport
    s.protocol = protocol_hint
    s.bytes_in = s.bytes_out = 0
    s.has_info = False
    offset = start + DIAG_MSG_SIZE
    while offset + RTATTR.size <= end:
        length, kind = RTATTR.unpack_from(buf, offset)
        if length < RTATTR.size:
            break
        payload = offset + RTATTR.size
        if kind == INET_DIAG_INFO and length - RTATTR.size >= TCPI_BYTES_OFFSET + TCPI_BYTES.size:
            s.bytes_out, s.bytes_in = TCPI_BYTES.unpack_from(buf, payload + TCPI_BYTES_OFFSET)
            s.protocol = socket.IPPROTO_TCP
            s.has_info = True
        elif kind == INET_DIAG_PROTOCOL and length - RTATTR.size >= 1:
            s.protocol = buf[payload]
        offset += align4(length)
    return s


def dump_request(family, protocol, seq):
    ext = 1 << (INET_DIAG_INFO - 1) if protocol == socket.IPPROTO_TCP else 0
    body = REQ_V2.pack(family, protocol, ext, 0, ALL_STATES, bytes(48))
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), SOCK_DIAG_BY_FAMILY,
                         NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


def ephemeral_ports():
    """The kernel's range of ports for outgoing connections (net.ipv4.ip_local_port_range)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = f.read().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


class NetworkCollector(EventCollector):
    def __init__(self, emit, dump_interval=1.0, receive_buffer=RECEIVE_BUFFER):
        super().__init__(emit)
        self.poll_interval = dump_interval
        self.receive_buffer = receive_buffer
        self.stats.update(lost=0, vanished=0, dumps=0)
        self._dump_sock = None
        self._destroy_sock = None
        self._buffer = bytearray(256 * 1024)
        self._seq = 0
        self._counted = {}          # cookie -> (bytes_in, bytes_out) already reported
        self._listening = set()     # (protocol, local port) of the last two dumps
        self._listened = set()      # those of the last dump alone
        self._ephemeral = ephemeral_ports()

    def open(self):
        dump = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG)
        destroy = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG)
        try:
            dump.bind((0, 0))
            try:
                destroy.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, self.receive_buffer)
            except OSError:
                destroy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer)
            destroy.bind((0, DESTROY_GROUPS))
            destroy.setblocking(False)
        except OSError:
            dump.close()
            destroy.close()
            raise
        self._dump_sock, self._destroy_sock = dump, destroy
        # Sockets open before we started are not new connections: only their later bytes count.
        for s in self._dump_all():
            self._remember_listener(s)
            if self._is_open_connection(s):
                self._counted[s.cookie] = (s.bytes_in, s.bytes_out)
        self._listened = set(self._listening)

    def close(self):
        for sock in (self._dump_sock, self._destroy_sock):
            if sock is not None:
                sock.close()
        self._dump_sock = self._destroy_sock = None

    def fileno(self):
        return self._destroy_sock.fileno() if self._destroy_sock is not None else None

    # -- sources -----------------------------------------------------------------------------
    def _dump_all(self):
        sockets = []
        for family in (socket.AF_INET, socket.AF_INET6):
            for protocol in (socket.IPPROTO_TCP, socket.IPPROTO_UDP):
                sockets.extend(self._dump(family, protocol))
        self.stats["dumps"] += 1
        return sockets

    def _dump(self, family, protocol):
        self._seq += 1
        self._dump_sock.send(dump_request(family, protocol, self._seq))
        result = []
        while True:
            n = self._dump_sock.recv_into(self._buffer)
            for kind, item in parse_messages(self._buffer, n, protocol):
                if kind == NLMSG_DONE:
                    return result
                if kind == NLMSG_ERROR:
                    if item == 0:
                        continue
                    raise OSError(-item, "sock_diag dump: %s" % os.strerror(-item))
                if item is not None:
                    result.append(item)

    def poll(self):
        """Dump all sockets: report new connections and bytes moved since the last dump."""
        if self._dump_sock is None:
            return 0
        sockets = self._dump_all()
        # A listener closed just before this dump still names its accepted connections "in" when
        # their destroy notifications come after it (the kernel sends them from a work queue).
        previous, self._listening = self._listened, set()
        for s in sockets:
            self._remember_listener(s)
        self._listened = set(self._listening)
        self._listening |= previous
        alive = set()
        emitted = 0
        for s in sockets:
            if self._is_open_connection(s):
                alive.add(s.cookie)
                emitted += self._account(s, final=False)
        for cookie in [c for c in self._counted if c not in alive]:
            del self._counted[cookie]
            self.stats["vanished"] += 1
        return emitted

    def read(self):
        """Drain destroy notifications: each closed socket's remaining bytes."""
        if self._destroy_sock is None:
            return 0
        emitted = 0
        while True:
            try:
                n = self._destroy_sock.recv_into(self._buffer)
            except BlockingIOError:
                return emitted
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    self.stats["lost"] += 1
                    continue
                raise
            for kind, s in parse_messages(self._buffer, n):
                if kind == SOCK_DIAG_BY_FAMILY and self._is_connection(s):
                    emitted += self._account(s, final=True)

    # -- accounting --------------------------------------------------------------------------
    @staticmethod
    def _is_connection(s):
        return s.protocol in PROTOCOLS and s.state != TCP_LISTEN and s.remote_port != 0

    def _is_open_connection(self, s):
        """A full connected socket in a dump. TIME_WAIT and request sockets (which carry no
        tcp_info, and whose full socket was already reported at destroy) are left out."""
        if not self._is_connection(s):
            return False
        return s.protocol != socket.IPPROTO_TCP or s.has_info

    def _remember_listener(self, s):
        if s.protocol == socket.IPPROTO_TCP and s.state == TCP_LISTEN:
            self._listening.add((s.protocol, s.local_port))
        elif s.protocol == socket.IPPROTO_UDP and s.remote_port == 0 and s.local_port != 0:
            self._listening.add((s.protocol, s.local_port))

    def _direction(self, s):
        """"in" when the local side listens: its port is a listening port seen in the last two dumps,
        or (a listener that came and went between dumps) the local port is a fixed one and the
        remote port an ephemeral one."""
        if (s.protocol, s.local_port) in self._listening:
            return "in"
        low, high = self._ephemeral
        if not low <= s.local_port <= high and low <= s.remote_port <= high:
            return "in"
        return "out"

    def _account(self, s, final):
        previous = self._counted.pop(s.cookie, None) if final else self._counted.get(s.cookie)
        if not final:
            self._counted[s.cookie] = (s.bytes_in, s.bytes_out)
        if previous is None:
            bytes_in, bytes_out, continued = s.bytes_in, s.bytes_out, False
        else:
            bytes_in, bytes_out = s.bytes_in - previous[0], s.bytes_out - previous[1]
            if bytes_in <= 0 and bytes_out <= 0:
                return 0
            bytes_in, bytes_out, continued = max(bytes_in, 0), max(bytes_out, 0), True
        event = {"kind": "connection", "t": time.time(), "protocol": PROTOCOLS[s.protocol],
                 "local_address": s.local_address, "local_port": s.local_port,
                 "remote_address": s.remote_address, "remote_port": s.remote_port,
                 "bytes_in": bytes_in, "bytes_out": bytes_out,
                 "direction": self._direction(s)}
        if continued:
            event["continued"] = True
        self._emit(event)
        return 1
