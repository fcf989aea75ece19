"""No parser raises on arbitrary input: corrupted files and packets are counted or skipped."""
import struct
import time

from hypothesis import given, settings, strategies as st

from host_sim.collectors.dns import DnsCollector, ETH_P_IP, ETH_P_IPV6
from host_sim.collectors.login import RECORD_SIZE, UTMP, parse_auth_line, parse_utmp
from host_sim.collectors.network import parse_messages
from host_sim.collectors.sbom import parse_control


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=RECORD_SIZE * 4))
def test_utmp_parser_never_raises(data):
    stats = {"corrupt": 0}
    records = parse_utmp(data, stats)
    assert len(records) + stats["corrupt"] == len(data) // RECORD_SIZE


@settings(max_examples=200, deadline=None)
@given(st.integers(-2**15, 2**15 - 1), st.integers(-2**31, 2**31 - 1), st.binary(min_size=32, max_size=32),
       st.binary(min_size=256, max_size=256), st.integers(-2**31, 2**31 - 1),
       st.binary(min_size=16, max_size=16))
def test_utmp_fields_of_any_value(ut_type, pid, user, host, sec, addr):
    record = UTMP.pack(ut_type, pid, b"pts/1", b"", user, host, 0, 0, 0, sec, 0, addr)
    stats = {"corrupt": 0}
    for r in parse_utmp(record, stats):
        assert isinstance(r.user, str) and (r.address is None or isinstance(r.address, str))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.sampled_from([ETH_P_IP, ETH_P_IPV6]))
def test_dns_packet_handler_never_raises(payload, ethertype):
    collector = DnsCollector(lambda event: None)
    if ethertype == ETH_P_IP:
        header = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 28 + len(payload), 0, 0, 64, 17, 0,
                             b"\xc0\x00\x02\x35", b"\xc0\x00\x02\x02")
    else:
        header = struct.pack(">IHBB16s16s", 0x60000000, 8 + len(payload), 17, 64, bytes(16), bytes(16))
    udp = struct.pack(">HHHH", 53, 40000, 8 + len(payload), 0)
    collector.handle_packet(header + udp + payload, ethertype, 1.0)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_sock_diag_parser_never_raises(data):
    for _kind, _item in parse_messages(data, len(data)):
        pass


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_control_file_and_auth_line_parsers_never_raise(text):
    parse_control(text)
    for line in text.splitlines():
        parse_auth_line(line, time.time())


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([2, 3, 20]), st.integers(0, 120), st.binary(max_size=120))
def test_sock_diag_messages_of_any_length_never_raise(kind, length, body):
    data = struct.pack("=IHHII", 16 + length, kind, 0, 0, 0) + body
    for _kind, _item in parse_messages(data, len(data)):
        pass
