"""IPv6 in the Linux collectors (issue 20): addresses in canonical text from every source
(sock_diag, DNS AAAA answers, utmp, sshd's log lines), and live over ::1 and a unique local
address (fd00::/8) in a network namespace of the test's own."""
import json
import random
import socket
import struct
import subprocess
import time

import pytest

from host_sim.collectors import addresses
from host_sim.collectors.dns import DnsCollector
from host_sim.collectors.login import parse_auth_line, parse_utmp
from host_sim.collectors.network import SOCK_DIAG_BY_FAMILY, NetworkCollector, parse_messages
from microagent.events import canonical_address
from collector_fixtures import fixture_path
from ipv6_net import ULA_CLIENT, ULA_SERVER, ResolverStub, listener, resolve, tcp_exchange
from polling import wait_for

# (any valid spelling, canonical text): RFC 5952 section 4 and the mapped rule of docs/spec.md
SPELLINGS = [
    ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
    ("2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
    ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),          # a tie: the first run is ::
    ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),       # one zero group is not compressed
    ("2001:db8:0:0:1::", "2001:db8:0:0:1::"),
    ("FD00:20::1", "fd00:20::1"),
    ("::ffff:192.0.2.9", "192.0.2.9"),
    ("::FFFF:c000:0209", "192.0.2.9"),
    ("0:0:0:0:0:ffff:c000:209", "192.0.2.9"),
    ("fe80::1%eth0", "fe80::1"),
    ("::1", "::1"),
    ("0:0:0:0:0:0:0:1", "::1"),
    ("::", "::"),
    ("192.0.2.9", "192.0.2.9"),
]
NOT_ADDRESSES = ["", "gateway.example.com", "2001:db8::1::2", "12345::", "192.0.2", ":0", "1.2.3.4.5",
                 "fe80::1%", "192.0.2.9%eth0", "fe80::1%%", " ::1"]


@pytest.mark.parametrize("spelling, canonical", SPELLINGS)
def test_collectors_write_addresses_in_canonical_text(spelling, canonical):
    assert addresses.canonical(spelling) == canonical
    address = spelling.split("%")[0]
    packed = socket.inet_pton(socket.AF_INET6 if ":" in address else socket.AF_INET, address)
    assert addresses.from_bytes(packed) == canonical


@pytest.mark.parametrize("text", NOT_ADDRESSES)
def test_what_is_not_an_address_is_none(text):
    assert addresses.canonical(text) is None


def test_collectors_and_the_engine_agree_on_canonical_text():
    """The engine canonicalises again (microagent.events, no ipaddress module on a board): both
    must give one text, or a DNS answer would not join its connection in a trace replayed on a
    board. Random addresses, zero groups frequent so that :: runs and ties occur."""
    rng = random.Random(20)
    for _ in range(3000):
        groups = [rng.choice((0, 0, 0, 1, 0xffff, rng.randrange(0x10000))) for _ in range(8)]
        raw = b"".join(g.to_bytes(2, "big") for g in groups)
        spelling = ":".join(rng.choice(("%x", "%04X")) % g for g in groups)
        assert addresses.from_bytes(raw) == canonical_address(spelling), spelling
        assert addresses.canonical(spelling) == canonical_address(spelling), spelling
    for spelling, _ in SPELLINGS:
        assert canonical_address(spelling) == addresses.canonical(spelling)
    for text in NOT_ADDRESSES:
        assert canonical_address(text) is None


# -- login: utmp records written by util-linux's utmpdump, and sshd lines ------------------------
UT_ADDR_V6 = 348                      # offset of ut_addr_v6 in glibc's 384-byte struct utmp


def utmp_record(host, address):
    """A real glibc utmp record (utmpdump -r) of a login from HOST with ut_addr_v6 ADDRESS."""
    text = ("[7] [31337] [ts/3] [zoe     ] [pts/3       ] [%s] [%s] "
            "[2026-11-27T10:00:00,000000+00:00]\n" % (host, address))
    return subprocess.run(["utmpdump", "-r"], input=text.encode(), capture_output=True,
                          check=True).stdout


def with_address(record, raw16):
    return record[:UT_ADDR_V6] + raw16 + record[UT_ADDR_V6 + 16:]


@pytest.mark.parametrize("host, address, expected", [
    ("", "2001:DB8:0:0::7", "2001:db8::7"),                  # all 16 bytes of ut_addr_v6
    ("", "fd00:20::1:0:0:1", "fd00:20::1:0:0:1"),
    ("", "::1", "::1"),
    ("", "192.0.2.10", "192.0.2.10"),                         # IPv4: the first 4 bytes
    ("2001:db8::", "2001:db8::", "2001:db8::"),               # twelve zero bytes: ut_host tells
    ("203.0.113.9", "0.0.0.0", "203.0.113.9"),                # no ut_addr_v6: ut_host
    ("2001:0DB8::0:9", "0.0.0.0", "2001:db8::9"),
])
def test_utmp_records_give_canonical_remote_addresses(host, address, expected):
    (record,) = parse_utmp(utmp_record(host, address))
    assert (record.user, record.line, record.address) == ("zoe", "pts/3", expected)


def test_utmp_ipv4_mapped_address_is_the_ipv4_address():
    mapped = bytes(10) + b"\xff\xff" + bytes([192, 0, 2, 33])
    (record,) = parse_utmp(with_address(utmp_record("", "0.0.0.0"), mapped))
    assert record.address == "192.0.2.33"


def test_utmp_ipv6_address_like_ipv4_without_host_is_read_as_ipv4():
    """Without ut_host, 2001:db8:: (twelve zero bytes) cannot be told from IPv4 32.1.13.184:
    glibc's own convention (IPv4 in the first 4 bytes) decides."""
    (record,) = parse_utmp(with_address(utmp_record("", "0.0.0.0"),
                                        socket.inet_pton(socket.AF_INET6, "2001:db8::")))
    assert record.address == "32.1.13.184"


@pytest.mark.parametrize("address, expected", [
    ("2001:db8::1", "2001:db8::1"),
    ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
    ("::ffff:192.0.2.9", "192.0.2.9"),
    ("fe80::1%eth0", "fe80::1"),
    ("::1", "::1"),
    ("fd00:20:0:0:1:0:0:1", "fd00:20::1:0:0:1"),
])
@pytest.mark.parametrize("line", [
    "Nov 27 09:30:00 gw sshd[77]: Accepted publickey for alice from %s port 22 ssh2",
    "2026-11-27T09:30:00.5+00:00 gw sshd-session[77]: Failed password for invalid user alice "
    "from %s port 22 ssh2",
    "Nov 27 09:30:00 gw sshd[77]: Disconnected from user alice %s port 22",
])
def test_sshd_lines_from_ipv6_give_canonical_addresses(address, expected, line):
    event = parse_auth_line(line % address, time.time())
    assert (event["user_name"], event["remote_address"]) == ("alice", expected)


def test_parse_captured_udp6_destroy_message():
    """A message of this kernel's SKNLGRP_INET6_UDP_DESTROY group: a connected UDP socket from
    fd00:20::2 to port 9 of fd00:20:0:0:1:0:0:1 captured in a namespace set up as the live tests' are)."""
    with open(fixture_path("sock_diag/destroy_messages.json")) as f:
        capture = json.load(f)["udp6"]
    raw = bytes.fromhex(capture["messages"][0])
    ((kind, s),) = parse_messages(raw, len(raw))
    assert kind == SOCK_DIAG_BY_FAMILY
    assert (s.family, s.protocol, s.local_address, s.local_port, s.remote_address, s.remote_port) \
        == (socket.AF_INET6, socket.IPPROTO_UDP, "fd00:20::2", capture["local_port"],
            "fd00:20::1:0:0:1", 9)


# -- live: sock_diag for AF_INET6 in a network namespace of the test's own --------------------
@pytest.fixture
def network(events, private_network):
    collector = NetworkCollector(events.append, dump_interval=3600)
    yield collector
    collector.close()


def read_until(collector, condition, timeout=10):
    return wait_for(lambda: collector.read() is not None and condition(), timeout)


def of(events, port):
    return [e for e in events if port in (e["local_port"], e["remote_port"])]


@pytest.mark.parametrize("server_host, client_host, server_text, client_text", [
    ("::1", "::1", "::1", "::1"),
    (ULA_SERVER, ULA_CLIENT, "fd00:20::1:0:0:1", "fd00:20::2"),
])
def test_tcp_over_ipv6_is_reported_from_the_destroy_group(network, events, ula, server_host,
                                                         client_host, server_text, client_text):
    server = listener(server_host)             # in the first dump: its port is a listening one
    network.open()
    client_port, server_port = tcp_exchange(server, client_host, b"q" * 5000, 600)
    server.close()
    read_until(network, lambda: len(of(events, client_port)) == 2)
    by_side = {e["local_port"]: e for e in of(events, client_port)}
    client, server = by_side[client_port], by_side[server_port]
    assert (client["protocol"], client["local_address"], client["remote_address"],
            client["remote_port"], client["direction"]) == \
        ("TCP", client_text, server_text, server_port, "out")
    assert (server["local_address"], server["remote_address"], server["direction"]) == \
        (server_text, client_text, "in")
    # tcp_info counts the SYN (sent by the client) and each FIN as one byte
    assert (client["bytes_out"], client["bytes_in"]) == (5000 + 2, 600 + 1)
    assert (server["bytes_in"], server["bytes_out"]) == (5000 + 1, 600 + 1)
    assert network.stats["dumps"] == 1                     # only the destroy group saw them


def test_open_ipv6_connection_is_reported_by_the_dump(network, events, ula):
    server = listener(ULA_SERVER)
    network.open()
    client = socket.create_connection(server.getsockname()[:2], timeout=10,
                                      source_address=(ULA_CLIENT, 0))
    accepted, _ = server.accept()
    try:
        client.sendall(b"d" * 700)
        received = 0
        while received < 700:
            received += len(accepted.recv(65536))
        network.poll()
        port = client.getsockname()[1]
        (event,) = [e for e in events if e["local_port"] == port]
        assert (event["local_address"], event["remote_address"], event["bytes_out"]) == \
            ("fd00:20::2", "fd00:20::1:0:0:1", 700 + 1)
        assert "continued" not in event
    finally:
        client.close()
        accepted.close()
        server.close()


@pytest.mark.parametrize("host, text", [("::1", "::1"), (ULA_SERVER, "fd00:20::1:0:0:1")])
def test_connected_udp_over_ipv6_is_reported(network, events, ula, host, text):
    network.open()
    receiver = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    receiver.bind((host, 0))
    sender = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sender.connect(receiver.getsockname()[:2])
    sender.send(b"ping")
    port, remote = sender.getsockname()[1], receiver.getsockname()[1]
    sender.close()
    receiver.close()
    read_until(network, lambda: any(e["local_port"] == port for e in events))
    (event,) = [e for e in events if e["local_port"] == port]
    assert (event["protocol"], event["local_address"], event["remote_address"],
            event["remote_port"], event["direction"]) == ("UDP", text, text, remote, "out")


def test_dual_stack_socket_with_an_ipv4_peer_is_reported_as_ipv4(network, events, ula):
    """An AF_INET6 UDP socket talking to an IPv4 peer through an IPv4-mapped address."""
    network.open()
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    sender = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sender.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sender.connect(("::ffff:127.0.0.1", receiver.getsockname()[1]))
    sender.send(b"ping")
    port = sender.getsockname()[1]
    sender.close()
    receiver.close()
    read_until(network, lambda: any(e["local_port"] == port for e in events))
    (event,) = [e for e in events if e["local_port"] == port]
    assert (event["local_address"], event["remote_address"]) == ("127.0.0.1", "127.0.0.1")


# -- live: AAAA answers from a resolver stub on ::1 ---------------------------------------------
@pytest.mark.parametrize("resolver", ["::1", ULA_SERVER])
def test_aaaa_answers_from_a_resolver_over_ipv6_are_seen(events, ula, resolver):
    stub = ResolverStub(resolver, ["FD00:20:0:0:1:0:0:1", "2001:db8::ab", "::ffff:192.0.2.80"])
    collector = DnsCollector(events.append)
    collector.start()
    try:
        answer = resolve(resolver, "sensor6.contoso.com")
        assert answer[3] & 0x0F == 0 and struct.unpack_from(">H", answer, 6)[0] == 3
        wait_for(lambda: len(events) >= 3, 10)
    finally:
        collector.stop()
        stub.close()
    assert [(e["hostname"], e["address"]) for e in events] == [
        ("sensor6.contoso.com", "fd00:20::1:0:0:1"),
        ("sensor6.contoso.com", "2001:db8::ab"),
        ("sensor6.contoso.com", "192.0.2.80"),
    ]
    assert collector.stats["lost"] == 0 and collector.stats["malformed"] == 0
