"""Hand-built MQTT 3.1.1 client packets for tests that need exact (or broken) bytes.

Written independently of hub_emulator.codec, so a codec bug cannot hide behind itself.
"""
import socket
import struct


def remaining_length(n):
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def packet(first_byte, body):
    return bytes([first_byte]) + remaining_length(len(body)) + body


def string(s):
    raw = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(raw)) + raw


def connect(client_id, username=None, password=None, keepalive=60, protocol=b"MQTT", level=4):
    flags = 0x02 | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    body = string(protocol) + bytes([level, flags]) + struct.pack("!H", keepalive) + string(client_id)
    if username is not None:
        body += string(username)
    if password is not None:
        body += string(password)
    return packet(0x10, body)


def publish(topic, payload, qos=0, packet_id=1):
    body = string(topic) + (struct.pack("!H", packet_id) if qos else b"") + payload
    return packet(0x30 | qos << 1, body)


def subscribe(packet_id, *filters):
    return packet(0x82, struct.pack("!H", packet_id) + b"".join(string(f) + b"\x01" for f in filters))


PINGREQ = b"\xc0\x00"


class RawClient:
    """A plain-TCP socket to the hub's plain port, with a receive timeout."""

    def __init__(self, hub, timeout=5):
        self.sock = socket.create_connection(("127.0.0.1", hub.plain_port), timeout=timeout)

    def send(self, data):
        self.sock.sendall(data)

    def recv_exact(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed after %d of %d bytes" % (len(data), n))
            data += chunk
        return data

    def read_packet(self):
        """(first byte, body) of the next packet from the hub."""
        first = self.recv_exact(1)[0]
        length, shift = 0, 0
        while True:
            byte = self.recv_exact(1)[0]
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        return first, self.recv_exact(length)

    def closed_by_server(self):
        """True when the server closes the connection (EOF or reset) before the timeout."""
        try:
            while True:
                if not self.sock.recv(4096):
                    return True
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def login(self, hub, identity="dev1", keepalive=60):
        self.send(connect(identity, hub.username(identity), hub.token(identity), keepalive))
        assert self.recv_exact(4) == b"\x20\x02\x00\x00"
        return self

    def close(self):
        self.sock.close()
