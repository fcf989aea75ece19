"""DNS collector: name resolutions seen on the wire, for dns_hit_count and host_name.

    DnsCollector(emit)

A raw AF_PACKET socket (root) with a classic BPF filter that passes only UDP datagrams from
source port 53 over IPv4 or IPv6 (UDP directly after the fixed IPv6 header: a response carried
behind IPv6 extension headers is not seen) that this host receives (not the copies of packets it sends).
Each DNS response's A and AAAA records become events (docs/spec.md section 1):
    {"kind": "dns", "t", "hostname": <the name that was asked>, "address": <canonical text>}
(dotted IPv4, or RFC 5952 IPv6; an AAAA answer holding an IPv4-mapped address is its IPv4), so
they join connections by the same text the network collector reports. The resolver may be
reached over either family: responses from port 53 carried by IPv4 or IPv6 are both read.
The hostname is the question's name, so a CNAME chain still reports what the program asked
for. Responses are parsed with the standard library only (struct; name compression handled);
a malformed packet is counted in stats["malformed"] and skipped, never an exception.
DNS over TCP, DoT and DoH are not visible this way.

Driving (see runner.py): open(); fileno() + read() (drains pending packets); no poll().
Or start()/stop(). stats: "events", "packets", "malformed", "lost" (packets the kernel dropped
because our socket buffer was full, from PACKET_STATISTICS).
"""
import ctypes
import errno
import socket
import struct
import time

from host_sim.collectors import addresses
from host_sim.collectors.runner import EventCollector

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
SO_ATTACH_FILTER = 26
SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_OUTGOING = 4
DNS_PORT = 53
TYPE_A = 1
TYPE_AAAA = 28
ADDRESS_LENGTHS = {TYPE_A: 4, TYPE_AAAA: 16}
CLASS_IN = 1
MAX_LABEL_JUMPS = 32
RECEIVE_BUFFER = 1024 * 1024

# Classic BPF on the network header (SOCK_DGRAM packet socket): (label, opcode, k, jt, jf).
SKF_AD_OFF = -0x1000
SKF_AD_PROTOCOL = 0
SKF_AD_PKTTYPE = 4
LD_W_ABS, LD_H_ABS, LD_B_ABS, LD_H_IND = 0x20, 0x28, 0x30, 0x48
LDX_B_MSH, JEQ, JSET, RET = 0xB1, 0x15, 0x45, 0x06
FILTER = [
    (None, LD_W_ABS, (SKF_AD_OFF + SKF_AD_PKTTYPE) & 0xFFFFFFFF, None, None),
    (None, JEQ, PACKET_OUTGOING, "drop", None),
    (None, LD_W_ABS, (SKF_AD_OFF + SKF_AD_PROTOCOL) & 0xFFFFFFFF, None, None),
    (None, JEQ, ETH_P_IP, None, "ipv6"),
    (None, LD_B_ABS, 9, None, None),                 # IPv4 protocol
    (None, JEQ, socket.IPPROTO_UDP, None, "drop"),
    (None, LD_H_ABS, 6, None, None),                 # flags + fragment offset
    (None, JSET, 0x1FFF, "drop", None),              # not the first fragment
    (None, LDX_B_MSH, 0, None, None),                # X = IPv4 header length
    (None, LD_H_IND, 0, None, None),                 # UDP source port
    (None, JEQ, DNS_PORT, "accept", "drop"),
    ("ipv6", JEQ, ETH_P_IPV6, None, "drop"),
    (None, LD_B_ABS, 6, None, None),                 # IPv6 next header
    (None, JEQ, socket.IPPROTO_UDP, None, "drop"),
    (None, LD_H_ABS, 40, None, None),                # UDP source port
    (None, JEQ, DNS_PORT, "accept", "drop"),
    ("drop", RET, 0, None, None),
    ("accept", RET, 0x40000, None, None),
]


def assemble(program):
    """Bytes of struct sock_filter[] with label jumps turned into relative offsets."""
    labels = {label: pc for pc, (label, _, _, _, _) in enumerate(program) if label}
    out = b""
    for pc, (_label, code, k, jt, jf) in enumerate(program):
        jt_off = labels[jt] - pc - 1 if jt else 0
        jf_off = labels[jf] - pc - 1 if jf else 0
        out += struct.pack("=HBBI", code, jt_off, jf_off, k)
    return out


def read_name(data, offset):
    """A (possibly compressed) domain name at offset: (name, offset after it)."""
    labels = []
    end = None
    for _ in range(MAX_LABEL_JUMPS):
        length = data[offset]
        if length & 0xC0 == 0xC0:
            if end is None:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | data[offset + 1]
            continue
        if length == 0:
            return ".".join(labels), (end if end is not None else offset + 1)
        labels.append(data[offset + 1:offset + 1 + length].decode("ascii", "replace"))
        if offset + 1 + length > len(data):
            raise ValueError("label past the end of the packet")
        offset += 1 + length
    raise ValueError("name compression loop")


def parse_response(data):
    """[(question name, canonical address)] for the A and AAAA records of a DNS response."""
    if len(data) < 12:
        raise ValueError("shorter than a DNS header")
    _id, flags, qdcount, ancount, _ns, _ar = struct.unpack_from(">HHHHHH", data, 0)
    if not flags & 0x8000 or flags & 0x000F:
        return []                                    # a query, or an error response
    offset = 12
    question = None
    for _ in range(qdcount):
        name, offset = read_name(data, offset)
        offset += 4
        if question is None:
            question = name
    answers = []
    for _ in range(ancount):
        name, offset = read_name(data, offset)
        rtype, rclass, _ttl, rdlength = struct.unpack_from(">HHIH", data, offset)
        offset += 10
        if offset + rdlength > len(data):
            raise ValueError("record past the end of the packet")
        if rclass == CLASS_IN and ADDRESS_LENGTHS.get(rtype) == rdlength:
            answers.append((question or name, addresses.from_bytes(data[offset:offset + rdlength])))
        offset += rdlength
    return answers


def udp_payload(packet, ethertype):
    """The UDP payload of an IPv4/IPv6 packet from source port 53, else None."""
    if ethertype == ETH_P_IP:
        if len(packet) < 20 or packet[9] != socket.IPPROTO_UDP:
            return None
        start = (packet[0] & 0x0F) * 4
    elif ethertype == ETH_P_IPV6:
        if len(packet) < 48 or packet[6] != socket.IPPROTO_UDP:
            return None
        start = 40
    else:
        return None
    if len(packet) < start + 8 or struct.unpack_from(">H", packet, start)[0] != DNS_PORT:
        return None
    return packet[start + 8:]


class DnsCollector(EventCollector):
    def __init__(self, emit):
        super().__init__(emit)
        self.stats.update(packets=0, malformed=0, lost=0)
        self._sock = None
        self._buffer = bytearray(65536)
        self._program = None

    def open(self):
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
        except PermissionError:
            raise PermissionError(errno.EPERM, "DNS collector: a raw packet socket needs root "
                                  "(CAP_NET_RAW)")
        try:
            code = assemble(FILTER)
            self._program = ctypes.create_string_buffer(code, len(code))
            fprog = struct.pack("HL", len(FILTER), ctypes.addressof(self._program))
            sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sock = sock

    def close(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def fileno(self):
        return self._sock.fileno() if self._sock is not None else None

    def read(self):
        if self._sock is None:
            return 0
        emitted = 0
        view = memoryview(self._buffer)
        while True:
            try:
                n, address = self._sock.recvfrom_into(self._buffer)
            except BlockingIOError:
                break
            if address[2] == PACKET_OUTGOING:
                continue
            self.stats["packets"] += 1
            emitted += self.handle_packet(bytes(view[:n]), address[1], time.time())
        self._count_drops()
        return emitted

    def handle_packet(self, packet, ethertype, t):
        """Emit the A and AAAA records of one received packet; returns how many."""
        payload = udp_payload(packet, ethertype)
        if payload is None:
            return 0
        try:
            answers = parse_response(payload)
        except (ValueError, IndexError, struct.error):
            self.stats["malformed"] += 1
            return 0
        for hostname, address in answers:
            self._emit({"kind": "dns", "t": t, "hostname": hostname, "address": address})
        return len(answers)

    def _count_drops(self):
        raw = self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
        _packets, drops = struct.unpack("=II", raw)      # reading resets the kernel counters
        self.stats["lost"] += drops
