# The socket instrumentation (microagent.collectors.netsock) with IPv6: real AF_INET6 sockets
# over ::1 (TCP both ways, UDP peers), getaddrinfo's AAAA answers (a real getaddrinfo result of
# ::1 given a name: no name resolves to IPv6 on every machine), IPv4-mapped peers as IPv4, the
# pending tables of a flush, and no allocation to count, report or hold an IPv6 connection.
# Runs on CPython, MicroPython (unix port) and micropython32. Rows read as
# (local, remote, local port, remote port, protocol, bytes in, bytes out, hits, direction).
import gc
import os
import sys

from microagent.cache import DnsTable, LoginCache, NetworkCache, ProcessCache
from microagent.cache6 import DnsTable6, NetworkCache6
from microagent.collectors import netsock
from microagent.encode import MessageEncoder
from microagent.engine import Engine
from mp_assert import only_on_micropython

real = netsock._real
MICROPYTHON = sys.implementation.name == "micropython"
AF_INET6 = real.AF_INET6


def _tracker(size=8):
    warnings = []
    encoder = MessageEncoder("00000000-0000-4000-8000-000000000000", lambda buf, n: None, 4096)
    engine = Engine(ProcessCache(0), NetworkCache(size), LoginCache(0), DnsTable(size), encoder,
                    warnings.append, network6=NetworkCache6(size), dns6=DnsTable6(size))
    tracker = netsock.Tracker(size)
    tracker.attach(engine, netsock.ticks_ms())
    netsock.TRACKER = tracker
    return tracker, engine, warnings


def _addr6(port):
    return real.getaddrinfo("::1", port)[0][-1]


def _listener6(kind=1):
    # A real socket bound to a free ::1 port (MicroPython has no getsockname: try ports).
    for _ in range(50):
        port = 20000 + (os.urandom(2)[0] << 8 | os.urandom(1)[0]) % 30000
        s = real.socket(AF_INET6, kind)
        s.setsockopt(real.SOL_SOCKET, real.SO_REUSEADDR, 1)
        try:
            s.bind(_addr6(port))
        except OSError:
            s.close()
            continue
        if kind == 1:
            s.listen(4)
        return s, port
    raise AssertionError("no free ::1 port")


def _rows(cache):
    return [(r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9]) for r in cache.rows([None] * 10)]


def _recv_exactly(sock, size):
    got = b""
    while len(got) < size:
        got += sock.recv(size - len(got))
    return got


def _local_port(sock):
    return sock._s.getsockname()[1] if hasattr(sock._s, "getsockname") else 0


def test_a_tcp_connection_over_ipv6_loopback_is_reported_with_canonical_addresses():
    tracker, engine, warnings = _tracker()
    server, port = _listener6()
    try:
        listening = netsock.TrackedSocket(AF_INET6, _tracker=tracker)
        listening._s.close()
        listening._s = server
        listening.local_port = port     # the listener came bound to [::1]:port
        client = netsock.TrackedSocket(AF_INET6, _tracker=tracker)
        client.connect(_addr6(port))
        accepted, _ = listening.accept()
        assert client.send(b"x" * 120) == 120
        assert _recv_exactly(accepted, 120) == b"x" * 120
        accepted.send(b"y" * 30)
        assert _recv_exactly(client, 30) == b"y" * 30
        local = _local_port(client)
        tracker.sweep()
        rows = _rows(engine.network6)
        assert ("::1", "::1", local, port, 0, 30, 120, 1, 2) in rows   # out
        inbound = [r for r in rows if r[8] == 1]
        assert len(inbound) == 1 and inbound[0][:3] == ("::1", "::1", port)
        assert inbound[0][5:] == (120, 30, 1, 1)
        assert engine.network.count == 0 and engine.unsupported == 0 and warnings == []
        # the next window sees only what happened in it
        engine.flush(0, 0)
        client.send(b"z" * 7)
        _recv_exactly(accepted, 7)
        client.close()
        accepted.close()
        tracker.sweep()
        assert [r for r in _rows(engine.network6) if r[8] == 2] == [
            ("::1", "::1", local, port, 0, 0, 7, 1, 2)]
        assert tracker.open_count() == 0
    finally:
        server.close()


def test_udp_ipv6_peers_are_separate_connections_and_mapped_peers_are_ipv4():
    tracker, engine, warnings = _tracker()
    first, port1 = _listener6(2)
    second, port2 = _listener6(2)
    try:
        u = netsock.TrackedSocket(AF_INET6, real.SOCK_DGRAM, _tracker=tracker)
        for _ in range(3):
            u.sendto(b"a" * 10, _addr6(port1))
        u.sendto(b"b" * 5, _addr6(port2))
        # a dual-stack socket's IPv4-mapped peer, as CPython and lwip name it: the IPv4 one
        u._set_peer(("::FFFF:192.0.2.1", 53), netsock.OUTBOUND)
        u.close()
        rows = sorted((r[3], r[5], r[6], r[7]) for r in _rows(engine.network6))
        assert rows == sorted([(port1, 0, 30, 1), (port2, 0, 5, 1)])
        assert [(r[1], r[3]) for r in _rows(engine.network)] == [("192.0.2.1", 53)]
    finally:
        first.close()
        second.close()


def test_socket_addresses_of_every_shape_are_read_without_their_spelling():
    halves = netsock.Tracker(0).halves
    raw = bytearray(28)  # the unix port's sockaddr_in6 for [2001:db8::a:b]:443
    raw[0] = AF_INET6 & 0xFF
    raw[1] = AF_INET6 >> 8
    raw[2], raw[3] = 443 >> 8, 443 & 0xFF
    for i, g in enumerate((0x2001, 0xdb8, 0, 0, 0, 0, 0xa, 0xb)):
        raw[8 + 2 * i], raw[9 + 2 * i] = g >> 8, g & 0xFF
    for addr in (raw, ("2001:DB8:0:0:0:0:A:B", 443), ("2001:db8::a:b%eth0", 443, 0, 3)):
        assert netsock.sockaddr_parse(addr, halves) == netsock.IPV6
        assert list(halves) == [0x2001, 0xdb8, 0, 0, 0, 0, 0xa, 0xb, 443]
    raw[8:24] = bytes(10) + bytes((0xFF, 0xFF, 192, 0, 0, 11))   # ::ffff:192.0.0.11: IPv4
    assert netsock.sockaddr_parse(raw, halves) == netsock.IPV4
    assert (halves[0], halves[1], halves[netsock.PORT]) == (0xC000, 0x000B, 443)
    assert netsock.sockaddr_parse(("not an address", 1), halves) == 0
    assert netsock.sockaddr_parse(b"\x01\x00" + bytes(20), halves) == 0   # AF_UNIX-like


def test_getaddrinfo_aaaa_answers_are_dns_events_joined_to_the_connection():
    tracker, engine, warnings = _tracker()
    server, port = _listener6()
    try:
        # a real result of the port's getaddrinfo: three socket types, one address
        netsock.record_answers("db.example", real.getaddrinfo("::1", port))
        assert engine.dns6.lookup("::1") == (1, "db.example")
        netsock.getaddrinfo("::1", port)            # a literal is no lookup
        assert engine.dns6.lookup("::1") == (1, "db.example")
        client = netsock.TrackedSocket(AF_INET6, _tracker=tracker)
        client.connect(_addr6(port))
        peer, _ = server.accept()
        client.close()
        peer.close()
        sent = []
        engine.encoder.sink = None
        encoder = MessageEncoder("00000000-0000-4000-8000-000000000000",
                                 lambda buf, n: sent.append(bytes(buf[:n])), 4096)
        engine.encoder = encoder
        engine.flush(0, 0)
        text = b"".join(sent).decode()
        assert '"remote_address":"::1"' in text.replace(" ", "")
        assert "db.example" in text
    finally:
        server.close()


def test_an_unknown_peer_is_counted_once_as_unsupported():
    tracker, engine, warnings = _tracker(4)
    u = netsock.TrackedSocket(real.AF_INET, real.SOCK_DGRAM, _tracker=tracker)
    try:
        u._set_peer(("no-such-family", 5000), netsock.OUTBOUND)
        u._set_peer(("no-such-family", 5000), netsock.OUTBOUND)
        assert engine.unsupported == 1 and engine.network.count == 0
        assert engine.network6.count == 0 and len(warnings) == 1
    finally:
        u.close()


def test_ipv6_activity_during_a_flush_waits_or_is_counted_lost_in_the_ipv6_cache():
    tracker, engine, warnings = _tracker(32)
    u = netsock.TrackedSocket(AF_INET6, real.SOCK_DGRAM, _tracker=tracker)
    try:
        u.sendto(b"x" * 10, _addr6(40021))
        tracker.sweep()
        engine.flush(0, 0)
        tracker.pause()
        u.sendto(b"y" * 5, _addr6(40021))
        # Other peers: each switch leaves a report that cannot wait on the socket. The tracker
        # holds PENDING_CONNECTIONS6 IPv6 ones; the rest are counted lost to the IPv6 cache.
        extra = 3
        for port in range(40022, 40022 + netsock.PENDING_CONNECTIONS6 + extra):
            u.sendto(b"z", _addr6(port))
        answers = real.getaddrinfo("::1", 80)
        for i in range(netsock.PENDING_LOOKUPS + 2):
            netsock.record_answers("host%d" % i, answers)
        assert engine.network6.count == 0 and engine.dns6.count == 0
        tracker.resume()
        tracker.sweep()
        assert engine.network6.dropped == extra and engine.network.dropped == 0
        assert engine.network6.count == netsock.PENDING_CONNECTIONS6 + 1
        rows = [(r[0], r[1], r[3], r[5], r[6]) for r in _rows(engine.network6)]
        assert rows[0] == ("::1", "::1", 40021, 0, 5) and rows[1][2:] == (40022, 0, 1)
        assert rows[-1][2] == 40022 + netsock.PENDING_CONNECTIONS6 + extra - 1
        # PENDING_LOOKUPS answers held (the same address: the latest name wins), 2 lost
        assert engine.dns6.lookup("::1") == (netsock.PENDING_LOOKUPS,
                                             "host%d" % (netsock.PENDING_LOOKUPS - 1))
        assert engine.dns.dropped == 2
    finally:
        u.close()


def test_the_board_s_ipv6_address_is_the_local_end_of_outbound_ipv6_connections():
    tracker, engine, warnings = _tracker()
    tracker.set_local_address("FD00:0:0:0::20")
    tracker.set_local_address("192.168.1.20")    # the IPv4 one is kept beside it
    u = netsock.TrackedSocket(AF_INET6, real.SOCK_DGRAM, _tracker=tracker)
    try:
        u._set_peer(("2001:db8::53", 53), netsock.OUTBOUND)
        u._set_peer(("198.51.100.1", 53), netsock.OUTBOUND)
        u._report()
        assert [(r[0], r[1]) for r in _rows(engine.network6)] == [("fd00::20", "2001:db8::53")]
        assert [(r[0], r[1]) for r in _rows(engine.network)] == [("192.168.1.20", "198.51.100.1")]
    finally:
        u.close()


def test_counting_reporting_and_holding_ipv6_connections_allocate_nothing():
    only_on_micropython("gc.mem_alloc")
    tracker, engine, warnings = _tracker(8)
    server, port = _listener6()
    try:
        client = netsock.TrackedSocket(AF_INET6, _tracker=tracker)
        client.connect(_addr6(port))
        peer, _ = server.accept()
        buf = bytearray(64)
        u = netsock.TrackedSocket(AF_INET6, real.SOCK_DGRAM, _tracker=tracker)
        peers = (_addr6(40031), _addr6(40032))
        answers = real.getaddrinfo("::1", 80)

        def loop(n):
            for _ in range(n):
                client.write(buf)
                peer.readinto(buf)
                peer.write(buf)
                client.readinto(buf)
                tracker.sweep()                 # a report into the IPv6 cache
                tracker.pause()
                u.sendto(buf, peers[0])         # a peer switch held in the pending table
                u.sendto(buf, peers[1])
                netsock.record_answers("db.example", answers)
                tracker.resume()

        loop(3)
        gc.collect()
        before = gc.mem_alloc()
        loop(100)
        assert gc.mem_alloc() - before == 0, gc.mem_alloc() - before
        peer.close()
        client.close()
        u.close()
    finally:
        server.close()


def test_a_board_without_an_ipv6_cache_counts_ipv6_peers_as_unsupported():
    warnings = []
    encoder = MessageEncoder("00000000-0000-4000-8000-000000000000", lambda buf, n: None, 4096)
    engine = Engine(ProcessCache(0), NetworkCache(4), LoginCache(0), DnsTable(4), encoder,
                    warnings.append)
    tracker = netsock.Tracker(4)
    tracker.attach(engine, netsock.ticks_ms())
    netsock.TRACKER = tracker
    u = netsock.TrackedSocket(AF_INET6, real.SOCK_DGRAM, _tracker=tracker)
    try:
        u.sendto(b"x", _addr6(40041))
        tracker.sweep()
        netsock.record_answers("db.example", real.getaddrinfo("::1", 80))
        tracker.pause()
        for port in range(40042, 40042 + netsock.PENDING_CONNECTIONS6 + 2):
            u.sendto(b"y", _addr6(port))
        tracker.resume()
        assert engine.network.count == 0 and engine.dns.count == 0
        # the first peer's report, then 5 peer switches (4 held, 1 lost); the last peer stays
        # on the socket
        assert engine.unsupported == 1 + netsock.PENDING_CONNECTIONS6 + 1
        assert len(warnings) == 1 and "NetworkActivity_IPv6_CacheSize" in warnings[0]
    finally:
        u.close()
