import json
import random
import socket
import struct

import pytest

from collector_fixtures import fixture_path
from host_sim.collectors.dns import DnsCollector, parse_response, read_name
from polling import wait_for

with open(fixture_path("dns/packets.json")) as f:
    CASES = json.load(f)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_packet_fixtures(case, events):
    collector = DnsCollector(events.append)
    collector.handle_packet(bytes.fromhex(case["packet"]), case["ethertype"], 7.0)
    assert [[e["hostname"], e["address"]] for e in events] == case["answers"]
    assert all(e["kind"] == "dns" and e["t"] == 7.0 for e in events)
    assert collector.stats["malformed"] == case["malformed"]


def test_name_compression_pointer_is_followed():
    data = b"\x00" * 12 + b"\x03www\x07example\x03com\x00" + b"\xc0\x10"
    assert read_name(data, 12) == ("www.example.com", 29)
    assert read_name(data, 29) == ("example.com", 31)


def test_truncated_label_is_an_error():
    with pytest.raises(ValueError):
        parse_response(struct.pack(">HHHHHH", 1, 0x8180, 1, 0, 0, 0) + b"\x20abc")


def response(qname, addresses):
    question = b"".join(bytes([len(p)]) + p.encode() for p in qname.split(".")) + b"\0\0\x01\0\x01"
    answers = b"".join(b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton(a)
                       for a in addresses)
    return struct.pack(">HHHHHH", 7, 0x8180, 1, len(addresses), 0, 0) + question + answers


def test_live_response_on_loopback_is_seen(events, private_network):
    """A real DNS response datagram from a loopback 'server' on port 53 reaches the packet socket
    (in a network namespace of the test's own: port 53 is free there, and the packet socket sees no
    other program's traffic)."""
    server_address = "127.%d.%d.%d" % (random.randint(1, 254), random.randint(1, 254),
                                       random.randint(2, 254))
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind((server_address, 53))
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    client.settimeout(5)
    collector = DnsCollector(events.append)
    collector.start()
    try:
        client.sendto(b"\x00\x07\x01\x00" + b"\x00" * 8, (server_address, 53))   # a query: ignored
        server.recvfrom(512)
        server.sendto(response("sensor.contoso.com", ["203.0.113.70", "203.0.113.71"]),
                      client.getsockname())
        client.recv(512)
        wait_for(lambda: sum(e["hostname"] == "sensor.contoso.com" for e in events) >= 2, 5)
    finally:
        collector.stop()
        server.close()
        client.close()
    mine = [(e["hostname"], e["address"]) for e in events if e["hostname"] == "sensor.contoso.com"]
    assert mine == [("sensor.contoso.com", "203.0.113.70"), ("sensor.contoso.com", "203.0.113.71")]
    assert collector.stats["lost"] == 0
