import json
import os
import socket
import threading
import time

import pytest

from collector_fixtures import fixture_path
from polling import wait_for
from host_sim.collectors.network import NetworkCollector, parse_messages, SOCK_DIAG_BY_FAMILY


def load_capture():
    with open(fixture_path("sock_diag/destroy_messages.json")) as f:
        return json.load(f)


def parsed(messages):
    result = []
    for hexed in messages:
        raw = bytes.fromhex(hexed)
        result.extend(s for kind, s in parse_messages(raw, len(raw)) if kind == SOCK_DIAG_BY_FAMILY)
    return result


def test_parse_captured_tcp4_destroy_messages():
    """Messages captured from this kernel's SKNLGRP_INET_TCP_DESTROY group: client sent 1000
    bytes and received 200 (tcp_info counts SYN and FIN as one byte each)."""
    capture = load_capture()["tcp4"]
    by_port = {s.local_port: s for s in parsed(capture["messages"]) if s.remote_port}
    client, server = by_port[capture["client_port"]], by_port[capture["server_port"]]
    assert (client.protocol, client.local_address, client.remote_address) == (6, "127.0.0.1", "127.0.0.1")
    assert client.remote_port == capture["server_port"]
    assert (client.bytes_out, client.bytes_in) == (1002, 201)
    assert (server.bytes_in, server.bytes_out) == (1001, 201)
    assert client.cookie != server.cookie and client.has_info


def test_parse_ipv6_and_ipv4_mapped_addresses():
    capture = load_capture()["tcp6"]
    sockets = {s.local_port: s for s in parsed(capture["messages"]) if s.remote_port}
    v6 = sockets[capture["client_port_v6"]]
    mapped = sockets[capture["client_port_mapped"]]
    assert (v6.local_address, v6.remote_address, v6.bytes_out) == ("::1", "::1", 302)
    assert (mapped.local_address, mapped.remote_address, mapped.bytes_out) == ("127.0.0.1", "127.0.0.1", 52)


def test_parse_udp_destroy_message_has_no_byte_counters():
    capture = load_capture()["udp4"]
    (udp,) = parsed(capture["messages"])
    assert (udp.protocol, udp.local_port, udp.remote_port) == (17, capture["local_port"], 9)
    assert (udp.bytes_in, udp.bytes_out, udp.has_info) == (0, 0, False)


def test_truncated_message_is_ignored():
    raw = bytes.fromhex(load_capture()["tcp4"]["messages"][0])
    assert list(parse_messages(raw[:40], 40)) == []


# -- live: sock_diag on this machine's kernel, as root, in a network namespace of the test's own,
# so other programs' loopback connections do not fill the dumps and the destroy group ---------
class Listener:
    """A loopback TCP server that reads everything, then answers `reply` bytes and closes."""

    def __init__(self, reply, family=socket.AF_INET, host="127.0.0.1"):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.reply = reply
        self.closing = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.closing:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(10)
            with conn:
                try:
                    while conn.recv(65536):
                        pass
                    conn.sendall(b"r" * self.reply)
                except OSError:
                    pass                # the test fails on its side if this matters

    def close(self):
        self.closing = True
        self.thread.join(5)
        self.sock.close()


def exchange(port, payload, host="127.0.0.1"):
    """Connect, send payload, half-close, read the answer; returns the client's local port."""
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        while s.recv(65536):
            pass
        return s.getsockname()[1]


def drain_until(collector, condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        collector.read()
        if condition():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def collector(events, private_network):
    c = NetworkCollector(events.append, dump_interval=3600)
    yield c
    c.close()


def flows(events, port):
    """Events of one connection (by one of its ports), summed per (local port, remote port)."""
    totals = {}
    for e in events:
        if port in (e["local_port"], e["remote_port"]):
            key = (e["local_port"], e["remote_port"])
            t = totals.setdefault(key, {"in": 0, "out": 0, "events": 0, "direction": e["direction"],
                                        "new": 0})
            t["in"] += e["bytes_in"]
            t["out"] += e["bytes_out"]
            t["events"] += 1
            t["new"] += 0 if e.get("continued") else 1
    return totals


def test_short_connection_between_dumps_is_caught_by_the_destroy_group(collector, events):
    listener = Listener(reply=777)
    try:
        collector.open()                                   # the listener is in the first dump
        client_port = exchange(listener.port, b"q" * 12345)
        assert drain_until(collector, lambda: len(flows(events, client_port)) == 2)
    finally:
        listener.close()
    totals = flows(events, client_port)
    client = totals[(client_port, listener.port)]
    server = totals[(listener.port, client_port)]
    # tcp_info counts the SYN (sent by the client) and the FIN as one byte each.
    assert (client["out"], client["in"]) == (12345 + 2, 777 + 1)
    assert (server["in"], server["out"]) == (12345 + 1, 777 + 1)
    assert (client["direction"], server["direction"]) == ("out", "in")
    assert client["new"] == server["new"] == 1
    assert collector.stats["dumps"] == 1                   # no dump ran in between
    sample = next(e for e in events if e["local_port"] == client_port)
    assert (sample["kind"], sample["protocol"], sample["local_address"], sample["remote_address"]) \
        == ("connection", "TCP", "127.0.0.1", "127.0.0.1")


def test_listener_closed_before_a_dump_still_makes_its_connections_inbound(collector, events):
    """The accepted socket's destroy notification is read after a dump that no longer sees the
    closed listener (both ports are ephemeral, so only the listener tells the direction)."""
    listener = Listener(reply=3)
    try:
        collector.open()
        client_port = exchange(listener.port, b"w" * 10)
    finally:
        listener.close()
    collector.poll()                                       # the listener is gone from this dump
    assert drain_until(collector, lambda: len(flows(events, client_port)) == 2)
    totals = flows(events, client_port)
    assert totals[(listener.port, client_port)]["direction"] == "in"
    assert totals[(client_port, listener.port)]["direction"] == "out"


def recv_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "connection closed early"
        data += chunk
    return data


def test_long_connection_bytes_counted_once_across_dumps(collector, events):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    collector.open()
    client = socket.create_connection(server.getsockname(), timeout=10)
    accepted, _ = server.accept()
    accepted.settimeout(10)
    port = client.getsockname()[1]
    mine = lambda: [e for e in events if e["local_port"] == port]   # noqa: E731
    try:
        client.sendall(b"a" * 1000)
        recv_exactly(accepted, 1000)
        collector.poll()
        assert len(mine()) == 1 and not mine()[0].get("continued")
        assert (mine()[0]["bytes_out"], mine()[0]["bytes_in"]) == (1000 + 1, 0)   # + SYN
        client.sendall(b"b" * 2000)
        recv_exactly(accepted, 2000)
        accepted.sendall(b"c" * 300)
        recv_exactly(client, 300)
        collector.poll()
        assert len(mine()) == 2 and mine()[1]["continued"] is True
        assert (mine()[1]["bytes_out"], mine()[1]["bytes_in"]) == (2000, 300)
        collector.poll()                                   # nothing moved: nothing reported
        assert len(mine()) == 2
    finally:
        client.close()
        accepted.close()
        server.close()
    # the FINs (ours, and the server's that closed the client socket), counted at destroy;
    # nothing twice
    assert drain_until(collector, lambda: sum(e["bytes_out"] for e in mine()) == 3000 + 2
                       and sum(e["bytes_in"] for e in mine()) == 300 + 1)
    assert sum(1 for e in mine() if not e.get("continued")) == 1


def test_ipv6_and_dual_stack_connections(collector, events):
    listener = Listener(reply=10, family=socket.AF_INET6, host="::")
    try:
        collector.open()
        port_v6 = exchange(listener.port, b"6" * 600, host="::1")
        port_v4 = exchange(listener.port, b"4" * 400, host="127.0.0.1")
        assert drain_until(collector, lambda: len(flows(events, port_v6)) == 2
                           and len(flows(events, port_v4)) == 2)
    finally:
        listener.close()
    v6 = [e for e in events if e["local_port"] == port_v6][0]
    v4_server = [e for e in events if e["remote_port"] == port_v4][0]
    assert (v6["local_address"], v6["remote_address"]) == ("::1", "::1")
    assert (v4_server["local_address"], v4_server["remote_address"]) == ("127.0.0.1", "127.0.0.1")
    assert v4_server["direction"] == "in"


def test_connected_udp_socket_is_reported(collector, events):
    collector.open()
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.connect(receiver.getsockname())
    remote = receiver.getsockname()[1]
    sender.send(b"ping")
    port = sender.getsockname()[1]
    sender.close()
    receiver.close()
    assert drain_until(collector, lambda: any(e["local_port"] == port for e in events))
    (event,) = [e for e in events if e["local_port"] == port]
    assert (event["protocol"], event["remote_port"], event["direction"]) == ("UDP", remote, "out")
    assert (event["bytes_in"], event["bytes_out"]) == (0, 0)


def test_thread_runner_reports_connections(events, private_network):
    collector = NetworkCollector(events.append, dump_interval=0.1)
    listener = Listener(reply=5)
    collector.start()
    try:
        port = exchange(listener.port, b"x" * 50)
        wait_for(lambda: len(flows(events, port)) >= 2, 5)
    finally:
        collector.stop()
        listener.close()
    assert len(flows(events, port)) == 2
    assert collector.stats["lost"] == 0


def test_destroy_notifications_dropped_by_the_kernel_are_counted(events, private_network):
    collector = NetworkCollector(events.append, dump_interval=3600, receive_buffer=1024)
    listener = Listener(reply=1)
    try:
        collector.open()
        for _ in range(200):
            exchange(listener.port, b"x")
        # The kernel broadcasts destroy notifications from a work queue, so they may still be
        # on their way: wait for its own count of drops on this socket before reading.
        inode = os.fstat(collector.fileno()).st_ino
        assert wait_for(lambda: netlink_drops(inode) > 0, 30), "the kernel dropped nothing"
        collector.read()
    finally:
        collector.close()
        listener.close()
    assert collector.stats["lost"] >= 1


def netlink_drops(inode):
    """The kernel's count of messages dropped on the netlink socket INODE (/proc/net/netlink)."""
    with open("/proc/net/netlink") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if int(fields[9]) == inode:
                return int(fields[8])
    raise AssertionError("netlink socket %d not in /proc/net/netlink" % inode)


UNPRIVILEGED_SCRIPT = """
import encodings.idna, os, select, socket, time    # imports first: /root is closed to nobody
from host_sim.collectors.dns import DnsCollector
from host_sim.collectors.network import NetworkCollector
os.setgid(65534); os.setuid(65534)
try:
    DnsCollector(print).open()
except PermissionError as exc:
    print(exc.strerror)
events = []
network = NetworkCollector(events.append, dump_interval=3600)
network.open()
server = socket.socket(); server.bind(("127.0.0.1", 0)); server.listen()
client = socket.create_connection(server.getsockname()); accepted, _ = server.accept()
client.sendall(b"x" * 100); accepted.recv(100); client.close(); accepted.close()
deadline = time.monotonic() + 5
while time.monotonic() < deadline and len(events) < 2:
    select.select([network], [], [], 0.1); network.read()
print(sorted(e["bytes_out"] for e in events if server.getsockname()[1] in
             (e["local_port"], e["remote_port"])))
"""


def test_without_root(private_network):
    """As nobody: the DNS collector says it needs root; sock_diag (dumps and destroy
    notifications) works unprivileged on this kernel."""
    import subprocess
    import sys
    result = subprocess.run([sys.executable, "-c", UNPRIVILEGED_SCRIPT], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "DNS collector: a raw packet socket needs root (CAP_NET_RAW)", "[1, 102]"]
