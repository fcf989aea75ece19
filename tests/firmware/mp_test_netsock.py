# The socket instrumentation (microagent.collectors.netsock) with real sockets on loopback:
# bytes in/out, direction, once-per-window reports, UDP peers, DNS events, a full socket table,
# and no allocation when the application sends or receives. Runs on CPython and MicroPython.
import gc
import os
import sys

from microagent.cache import DnsTable, LoginCache, NetworkCache, ProcessCache
from microagent.collectors import netsock
from microagent.encode import MessageEncoder
from microagent.engine import Engine

real = netsock._real
MICROPYTHON = sys.implementation.name == "micropython"


def _engine(size=8):
    sent = []
    encoder = MessageEncoder("00000000-0000-4000-8000-000000000000",
                             lambda buf, n: sent.append(bytes(buf[:n])), 4096)
    return Engine(ProcessCache(0), NetworkCache(size), LoginCache(0), DnsTable(size), encoder,
                  lambda text: None)


def _tracker(size=8):
    tracker = netsock.Tracker(size)
    engine = _engine(8)
    tracker.attach(engine, netsock.ticks_ms())
    netsock.TRACKER = tracker
    return tracker, engine


def _listener(kind=1):
    # A real socket bound to a free loopback port (MicroPython has no getsockname: try ports).
    for _ in range(50):
        port = 20000 + (os.urandom(2)[0] << 8 | os.urandom(1)[0]) % 30000
        s = real.socket(real.AF_INET, kind)
        s.setsockopt(real.SOL_SOCKET, real.SO_REUSEADDR, 1)
        try:
            s.bind(real.getaddrinfo("127.0.0.1", port)[0][-1])
        except OSError:
            s.close()
            continue
        if kind == 1:
            s.listen(4)
        return s, port
    raise AssertionError("no free loopback port")


def _rows(engine):
    out = []
    for r in engine.network.rows([None] * 10):
        out.append((r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9]))
    return out


def _local_port(sock):
    return sock._s.getsockname()[1] if hasattr(sock._s, "getsockname") else 0


def _recv_exactly(sock, size):
    got = b""
    while len(got) < size:
        got += sock.recv(size - len(got))
    return got


def test_tcp_bytes_direction_and_once_per_window():
    tracker, engine = _tracker()
    server, port = _listener()
    try:
        listening = netsock.TrackedSocket(_tracker=tracker)
        listening._s.close()
        listening._s = server
        listening.local_port = port
        client = netsock.TrackedSocket(_tracker=tracker)
        client.connect(real.getaddrinfo("127.0.0.1", port)[0][-1])
        accepted, _ = listening.accept()
        assert client.send(b"x" * 120) == 120
        assert _recv_exactly(accepted, 120) == b"x" * 120
        accepted.send(b"y" * 30)
        assert _recv_exactly(client, 30) == b"y" * 30
        local = _local_port(client)
        tracker.sweep()
        rows = _rows(engine)
        assert ("127.0.0.1", "127.0.0.1", local, port, 0, 30, 120, 1, 2) in rows  # out
        assert ("127.0.0.1", "127.0.0.1", port, rows[1][3], 0, 120, 30, 1, 1) == rows[1]  # in
        # A quiet socket adds nothing more to the window; new bytes come as a delta, one report
        # per window: the next window sees only what happened in it.
        tracker.sweep()
        assert _rows(engine) == rows
        engine.flush(0, 0)
        client.send(b"z" * 7)
        _recv_exactly(accepted, 7)
        client.close()
        accepted.close()
        tracker.sweep()
        assert [r for r in _rows(engine) if r[8] == 2] == [("127.0.0.1", "127.0.0.1", local, port, 0, 0, 7, 1, 2)]
        assert tracker.open_count() == 0  # closed sockets leave the table
    finally:
        server.close()


def test_udp_peers_are_separate_connections():
    tracker, engine = _tracker()
    first, port1 = _listener(2)
    second, port2 = _listener(2)
    try:
        u = netsock.TrackedSocket(real.AF_INET, real.SOCK_DGRAM, _tracker=tracker)
        a1 = real.getaddrinfo("127.0.0.1", port1)[0][-1]
        a2 = real.getaddrinfo("127.0.0.1", port2)[0][-1]
        for _ in range(3):
            u.sendto(b"a" * 10, a1)
        u.sendto(b"b" * 5, a2)
        u.close()
        rows = sorted((r[3], r[4], r[5], r[6], r[7]) for r in _rows(engine))
        assert rows == sorted([(port1, 1, 0, 30, 1), (port2, 1, 0, 5, 1)])
    finally:
        first.close()
        second.close()


def test_getaddrinfo_names_are_dns_events_but_literals_are_not():
    tracker, engine = _tracker()
    netsock.getaddrinfo("localhost", 80)
    netsock.getaddrinfo("localhost", 443)
    netsock.getaddrinfo("127.0.0.1", 80)
    assert engine.dns.lookup("127.0.0.1") == (2, "localhost")
    assert engine.dns.count == 1


def test_a_full_socket_table_still_counts_the_connection():
    tracker, engine = _tracker(size=1)
    server, port = _listener()
    try:
        addr = real.getaddrinfo("127.0.0.1", port)[0][-1]
        first = netsock.TrackedSocket(_tracker=tracker)
        first.connect(addr)
        second = netsock.TrackedSocket(_tracker=tracker)
        second.connect(addr)
        assert tracker.untracked == 1
        assert [r[7] for r in _rows(engine)] == [1]  # the untracked one, counted at connect
        first.close()
        second.close()
        # Both connections, once each (one entry on MicroPython, where the local port is unknown).
        assert sum(r[7] for r in _rows(engine)) == 2
    finally:
        server.close()


def test_install_replaces_the_socket_module_for_the_application():
    tracker = netsock.install(4)
    try:
        import socket
        assert socket.socket is netsock.TrackedSocket and socket.getaddrinfo is netsock.getaddrinfo
        assert socket.AF_INET == real.AF_INET and netsock.TRACKER is tracker
    finally:
        netsock.uninstall()
    import socket
    assert socket is real


def test_sending_and_receiving_allocate_nothing():
    tracker, engine = _tracker()
    server, port = _listener()
    try:
        client = netsock.TrackedSocket(_tracker=tracker)
        client.connect(real.getaddrinfo("127.0.0.1", port)[0][-1])
        peer, _ = server.accept()
        buf = bytearray(64)
        use_streams = hasattr(peer, "readinto")

        def loop(n):
            for _ in range(n):
                client.send(buf)
                if use_streams:
                    client.write(buf)
                    peer.readinto(buf)
                    peer.readinto(buf)
                    peer.write(buf)
                    client.readinto(buf)
                else:
                    _recv_exactly(peer, 64)
                    peer.send(buf)
                    _recv_exactly(client, 64)

        loop(5)
        if MICROPYTHON:
            gc.collect()
            before = gc.mem_alloc()
            loop(200)
            assert gc.mem_alloc() - before == 0, gc.mem_alloc() - before
        else:
            loop(200)
        per_loop_out = 128 if use_streams else 64
        assert client.bytes_out == 205 * per_loop_out and client.bytes_in == 205 * 64
        peer.close()
        client.close()
    finally:
        server.close()


def _warned_engine(size):
    warnings = []
    encoder = MessageEncoder("00000000-0000-4000-8000-000000000000", lambda buf, n: None, 4096)
    engine = Engine(ProcessCache(0), NetworkCache(size), LoginCache(0), DnsTable(size), encoder,
                    warnings.append)
    tracker = netsock.Tracker(size)
    tracker.attach(engine, netsock.ticks_ms())
    netsock.TRACKER = tracker
    return tracker, engine, warnings


def _ipv4(port):
    return real.getaddrinfo("127.0.0.1", port)[0][-1]


def test_a_full_network_cache_warns_once_per_window_as_in_replay():
    tracker, engine, warnings = _warned_engine(2)
    u = netsock.TrackedSocket(real.AF_INET, real.SOCK_DGRAM, _tracker=tracker)
    try:
        for port in range(40001, 40006):  # 5 peers, a cache of 2: 3 dropped
            u.sendto(b"x", _ipv4(port))
        tracker.sweep()
        assert engine.network.count == 2 and engine.network.dropped == 3
        assert warnings == ["ConnectionCreate cache full (2 entries): dropping new entries this "
                            "window; raise NetworkActivity_CacheSize"]
        engine.flush(0, 0)
        for port in range(40011, 40014):
            u.sendto(b"x", _ipv4(port))
        tracker.sweep()
        assert len(warnings) == 2  # a new window warns again
    finally:
        u.close()


def test_long_host_names_are_capped():
    # IPv6 peers and answers: mp_test_netsock6
    tracker, engine, warnings = _warned_engine(4)
    name = "a" * 3000
    tracker.lookup(name, 0x7F00, 1)
    assert engine.dns.host_name[0].endswith("...[truncated]")
    assert len(engine.dns.host_name[0].encode()) == 2048


def test_activity_during_a_flush_waits_for_the_next_window_or_is_counted_lost():
    tracker, engine, warnings = _warned_engine(32)
    u = netsock.TrackedSocket(real.AF_INET, real.SOCK_DGRAM, _tracker=tracker)
    try:
        u.sendto(b"x" * 10, _ipv4(40021))
        tracker.sweep()
        engine.flush(0, 0)
        tracker.pause()
        u.sendto(b"y" * 5, _ipv4(40021))     # the same peer: its bytes wait on the socket
        # Other peers: each switch leaves a report that cannot wait on the socket. The tracker
        # holds PENDING_CONNECTIONS of them; the rest are counted lost.
        extra = 3
        for port in range(40022, 40022 + netsock.PENDING_CONNECTIONS + extra):
            u.sendto(b"z", _ipv4(port))
        for i in range(netsock.PENDING_LOOKUPS + 2):
            tracker.lookup("host%d" % i, 0x0A00, i + 1)
        assert engine.network.count == 0 and engine.dns.count == 0
        tracker.resume()
        tracker.sweep()
        # 19 peer switches: 16 reports held (40021's 5 bytes first), 3 counted lost; the last
        # peer (still on the socket) comes with the sweep.
        assert engine.network.dropped == extra
        assert engine.network.count == netsock.PENDING_CONNECTIONS + 1
        rows = [(r[3], r[5], r[6]) for r in _rows(engine)]
        assert rows[0] == (40021, 0, 5) and rows[1] == (40022, 0, 1)
        assert rows[-1] == (40022 + netsock.PENDING_CONNECTIONS + extra - 1, 0, 1)
        assert engine.dns.count == netsock.PENDING_LOOKUPS and engine.dns.dropped == 2
    finally:
        u.close()


def test_pausing_and_resuming_keeps_the_pending_tables_and_allocates_nothing():
    tracker, engine, warnings = _warned_engine(8)
    tables = (tracker.pending_connections, tracker.pending_bytes, tracker.pending_kind,
              tracker.pending_names, tracker.pending_halves)
    tracker.pause()
    tracker.resume()
    if MICROPYTHON:
        gc.collect()
        before = gc.mem_alloc()
        for _ in range(50):
            tracker.pause()
            tracker.resume()
        assert gc.mem_alloc() - before == 0, gc.mem_alloc() - before
    assert all(a is b for a, b in zip(tables, (tracker.pending_connections, tracker.pending_bytes,
                                              tracker.pending_kind, tracker.pending_names,
                                              tracker.pending_halves)))
    assert tracker.pending == tracker.pending_count == tracker.connections_lost == 0
