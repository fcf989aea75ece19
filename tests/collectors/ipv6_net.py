"""Helpers of the IPv6 live tests: unique local addresses in the test's network namespace, TCP
exchanges over AF_INET6, and a resolver stub answering AAAA queries."""
import socket
import struct
import subprocess
import threading

ULA_SERVER = "fd00:20:0:0:1:0:0:1"        # written long: the collector reports fd00:20::1:0:0:1
ULA_CLIENT = "fd00:20::2"


def add_ula_addresses():
    """Two unique local addresses on the loopback of the current (the test's own) namespace."""
    for address in (ULA_SERVER, ULA_CLIENT):
        subprocess.run(["ip", "-6", "addr", "add", address + "/128", "dev", "lo", "nodad"],
                       check=True, capture_output=True)


def listener(host):
    server = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    server.bind((host, 0))
    server.listen(1)
    return server


def tcp_exchange(server, client_host, payload, reply):
    """One TCP connection from CLIENT_HOST to the listening socket SERVER: PAYLOAD up, REPLY
    bytes down, closed; (client port, server port)."""
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as client:
        client.settimeout(10)
        client.bind((client_host, 0))
        client.connect(server.getsockname()[:2])
        accepted, _ = server.accept()
        with accepted:
            client.sendall(payload)
            client.shutdown(socket.SHUT_WR)
            received = 0
            while received < len(payload):
                received += len(accepted.recv(65536))
            accepted.sendall(b"r" * reply)
            accepted.shutdown(socket.SHUT_WR)
            while client.recv(65536):
                pass
        return client.getsockname()[1], server.getsockname()[1]


def dns_name(name):
    return b"".join(bytes([len(part)]) + part.encode() for part in name.split(".")) + b"\0"


def aaaa_response(query, addresses_text):
    """The stub's answer to QUERY: its question, then an AAAA record per address."""
    (qid,) = struct.unpack_from(">H", query)
    question = query[12:]
    answers = b"".join(b"\xc0\x0c" + struct.pack(">HHIH", 28, 1, 60, 16)
                       + socket.inet_pton(socket.AF_INET6, a) for a in addresses_text)
    return struct.pack(">HHHHHH", qid, 0x8180, 1, len(addresses_text), 0, 0) + question + answers


class ResolverStub:
    """A UDP DNS server on [HOST]:53 answering every query with AAAA records of ADDRESSES."""

    def __init__(self, host, addresses_text):
        self.sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self.sock.bind((host, 53))
        self.sock.settimeout(0.2)
        self.addresses = addresses_text
        self.closing = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.closing:
            try:
                query, peer = self.sock.recvfrom(512)
            except socket.timeout:
                continue
            self.sock.sendto(aaaa_response(query, self.addresses), peer)

    def close(self):
        self.closing = True
        self.thread.join(5)
        self.sock.close()


def resolve(server, name):
    """Asks SERVER (an IPv6 address) for NAME's AAAA records; returns the raw answer."""
    query = struct.pack(">HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0) + dns_name(name) + b"\0\x1c\0\x01"
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as client:
        client.settimeout(10)
        client.sendto(query, (server, 53))
        return client.recv(512)
