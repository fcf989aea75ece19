"""The firmware's name lookup (microagent.resolve) against a DNS server on loopback written here
from RFC 1035 (not from the code under test): the A record comes back, a server that never
answers fails at the deadline while the asyncio loop keeps running, NXDOMAIN is an error."""
import asyncio
import socket
import struct
import threading

import pytest

from microagent import resolve


class DnsServer:
    """Answers A queries on 127.0.0.1: NAMES maps a name to its IPv4 address (the answer's name
    is a compression pointer to the question); unknown names get NXDOMAIN; SILENT: no answer."""

    def __init__(self, names, silent=False):
        self.names = names
        self.silent = silent
        self.queries = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(512)
            except OSError:
                continue
            self.queries += 1
            if self.silent:
                continue
            ident, = struct.unpack("!H", data[:2])
            labels, at = [], 12
            while data[at]:
                labels.append(data[at + 1:at + 1 + data[at]].decode())
                at += 1 + data[at]
            question = data[12:at + 5]
            name = ".".join(labels)
            if name not in self.names:
                self.sock.sendto(struct.pack("!HHHHHH", ident, 0x8183, 1, 0, 0, 0) + question, peer)
                continue
            cname = struct.pack("!HHHIH", 0xC00C, 5, 1, 60, 2) + b"\xc0\x0c"  # a CNAME first
            answer = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton(self.names[name])
            self.sock.sendto(struct.pack("!HHHHHH", ident, 0x8180, 1, 2, 0, 0) + question
                             + cname + answer, peer)

    def close(self):
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def dns():
    servers = []

    def make(names, silent=False):
        servers.append(DnsServer(names, silent))
        return servers[-1]
    yield make
    for server in servers:
        server.close()


def test_a_host_name_resolves_through_the_dns_server(dns):
    server = dns({"hub.example.net": "10.1.2.3"})
    address = asyncio.run(resolve.lookup("hub.example.net", "127.0.0.1", 3000, server.port))
    assert address == "10.1.2.3" and server.queries == 1
    assert asyncio.run(resolve.resolve("hub.example.net", 8883, 3000, "127.0.0.1", server.port)) \
        == ("10.1.2.3", 8883)


def test_an_unknown_name_is_an_error_naming_the_code(dns):
    server = dns({})
    with pytest.raises(resolve.ResolveError, match="error code 3"):
        asyncio.run(resolve.lookup("nowhere.example", "127.0.0.1", 3000, server.port))


def test_a_silent_server_fails_at_the_deadline_and_the_loop_keeps_running(dns):
    server = dns({}, silent=True)
    ticks = []

    async def application():
        while True:
            ticks.append(asyncio.get_running_loop().time())
            await asyncio.sleep(0.01)

    async def both():
        app = asyncio.create_task(application())
        try:
            await resolve.lookup("hub.example.net", "127.0.0.1", 2500, server.port)
        finally:
            app.cancel()

    with pytest.raises(resolve.ResolveError, match="no answer from DNS server"):
        asyncio.run(both())
    assert server.queries >= 2  # re-sent every second
    # The application ran all along: no gap of a blocking lookup between its ticks.
    assert len(ticks) > 20
    assert max(b - a for a, b in zip(ticks, ticks[1:])) < 1.0  # a blocking one: 2.5 s


def test_address_literals_need_no_server():
    assert asyncio.run(resolve.resolve("127.0.0.1", 1883, 10, "192.0.2.1")) == ("127.0.0.1", 1883)
