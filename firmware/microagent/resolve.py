# Name lookup that yields to the asyncio loop. MicroPython's socket.getaddrinfo() blocks until the
# DNS server answers (seconds when it does not), so for a host name the agent asks the board's DNS
# server itself: one A query over a non-blocking UDP socket, re-sent every second, awaited against
# a deadline. Address literals and "localhost" need no network and go to getaddrinfo() directly.
# MicroPython-compatible. Loaded only while connecting (the agent unloads it after).
import os
import socket

from microagent.clock import ticks_diff, ticks_ms
from microagent.events import parse_ipv4

# The application's `socket` may be the tracking stand-in (collectors/netsock.py): the agent's own
# lookups are not the application's traffic.
socket = getattr(socket, "real", socket)

_RESEND_MS = 1000
_IDLE_MS = 10
_TYPE_A = 1


class ResolveError(OSError):
    pass


def _pause(ms):
    import asyncio
    sleep_ms = getattr(asyncio, "sleep_ms", None)
    return sleep_ms(ms) if sleep_ms is not None else asyncio.sleep(ms / 1000)


def dns_server():
    """The IPv4 address of the board's DNS server, or None when it cannot be found: the network
    module's (MicroPython 1.24+: network.ipconfig("dns"); earlier: an interface's ifconfig()),
    else the first IPv4 nameserver of /etc/resolv.conf (the unix port, Linux)."""
    try:
        import network
    except ImportError:
        network = None
    if network is not None:
        try:
            return network.ipconfig("dns")
        except (AttributeError, OSError, ValueError, TypeError):
            pass
        for name in ("STA_IF", "ETH"):
            try:
                interface = network.WLAN(network.STA_IF) if name == "STA_IF" else network.LAN()
                return interface.ifconfig()[3]
            except (AttributeError, OSError, ValueError, TypeError):
                continue
    try:
        with open("/etc/resolv.conf") as f:
            for line in f:
                words = line.split()
                if len(words) >= 2 and words[0] == "nameserver" and "." in words[1]:
                    return words[1]
    except OSError:
        pass
    return None


def query(name, ident):
    """A DNS query packet asking for the A record of NAME with id IDENT."""
    packet = bytearray(b"\x00\x00\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00")
    packet[0] = ident >> 8
    packet[1] = ident & 0xFF
    for label in name.rstrip(".").split("."):
        data = label.encode()
        if not 0 < len(data) < 64:
            raise ResolveError("bad host name %r" % name)
        packet.append(len(data))
        packet.extend(data)
    packet.extend(b"\x00\x00\x01\x00\x01")
    return packet


def _skip_name(data, at):
    while True:
        if at >= len(data):
            raise ValueError("truncated name")
        length = data[at]
        if length & 0xC0 == 0xC0:
            return at + 2
        if length == 0:
            return at + 1
        at += 1 + length


def first_address(data, ident):
    """The first IPv4 address (dotted text) in DNS answer DATA to query IDENT; None when the
    packet is not that answer; ResolveError when the server says the name has no address."""
    if len(data) < 12 or (data[0] << 8 | data[1]) != ident or not data[2] & 0x80:
        return None
    rcode = data[3] & 0x0F
    if rcode:
        raise ResolveError("DNS server answered with error code %d" % rcode)
    questions = data[4] << 8 | data[5]
    answers = data[6] << 8 | data[7]
    try:
        at = 12
        for _ in range(questions):
            at = _skip_name(data, at) + 4
        for _ in range(answers):
            at = _skip_name(data, at)
            kind = data[at] << 8 | data[at + 1]
            size = data[at + 8] << 8 | data[at + 9]
            at += 10
            if kind == _TYPE_A and size == 4 and at + 4 <= len(data):
                return "%d.%d.%d.%d" % (data[at], data[at + 1], data[at + 2], data[at + 3])
            at += size
    except (ValueError, IndexError):
        return None
    raise ResolveError("no IPv4 address in the DNS answer")


async def lookup(name, server, timeout_ms, server_port=53):
    """The IPv4 address (dotted text) of NAME from the DNS SERVER, awaited: ResolveError when
    there is none or no answer came within TIMEOUT_MS."""
    ident = (os.urandom(1)[0] << 8) | os.urandom(1)[0]
    packet = query(name, ident)
    target = socket.getaddrinfo(server, server_port, 0, socket.SOCK_DGRAM)[0][-1]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    buffer = bytearray(512)
    try:
        sock.setblocking(False)
        start = ticks_ms()
        sent_at = None
        while True:
            now = ticks_ms()
            if ticks_diff(now, start) >= timeout_ms:
                raise ResolveError("no answer from DNS server %s for %s within %d ms"
                                   % (server, name, timeout_ms))
            if sent_at is None or ticks_diff(now, sent_at) >= _RESEND_MS:
                try:
                    sock.sendto(packet, target)
                except OSError:
                    pass  # a busy interface: the next resend tries again
                sent_at = now
            try:
                size = sock.readinto(buffer) if hasattr(sock, "readinto") else sock.recv_into(buffer)
            except OSError:
                size = None
            if size:
                address = first_address(memoryview(buffer)[:size], ident)
                if address is not None:
                    return address
            await _pause(_IDLE_MS)
    finally:
        sock.close()


async def resolve(host, port, timeout_ms, server=None, server_port=53):
    """A socket address for HOST:PORT (for socket.connect), without blocking the loop on DNS.
    SERVER: the DNS server to ask (default dns_server()); with none known, the port's blocking
    getaddrinfo() is the fallback."""
    if host != "localhost" and not parse_ipv4(host, [0, 0], 0):
        server = server or dns_server()
        if server is not None:
            host = await lookup(host, server, timeout_ms, server_port)
    return socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0][-1]
