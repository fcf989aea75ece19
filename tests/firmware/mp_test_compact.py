# The compact encoder on both runtimes: the bytes of a known message written out by hand from
# RFC 8949 and the stringref rules, the size-cap split, and no allocation per connection item.
import gc
import sys
from binascii import unhexlify

from microagent import events
from microagent.compact import CompactEncoder, is_compact
from mp_assert import only_on_micropython

MICROPYTHON = sys.implementation.name == "micropython"
AGENT = "00000000-0000-4000-8000-000000000000"


def _encoder(max_size=4096):
    sent = []
    encoder = CompactEncoder(AGENT, lambda buf, n: sent.append(bytes(buf[:n])), max_size, None)
    return encoder, sent


def _connection(offset, remote, port, host=None):
    return [offset, "10.0.0.1", remote, port, 443, "TCP", "HTTPS", 0, 300, 1,
            1 if host else 0, {"host_name": host} if host else {}, "out"]


def test_a_connection_message_byte_for_byte():
    encoder, sent = _encoder()
    encoder.begin(1000, 400)
    encoder.event(events.CONNECTION, "Triggered", "Security")
    encoder.item(events.CONNECTION_FIELDS, _connection(5, "1.2.3.4", 40000, "h.io"))
    encoder.item(events.CONNECTION_FIELDS, _connection(7, "1.2.3.4", 40001))
    assert encoder.finish() == 1
    body = sent[0]
    assert is_compact(body)
    guid = body[38:54]
    expected = (
        b"\xd9\x01\x00\x9f"                   # tag 256 (stringref namespace), [_
        b"\x01"                               # format version 1
        b"\x50" + unhexlify(AGENT.replace("-", ""))  # agent id, 16 bytes (string 0)
        + b"\x65" + b"0.1.0"                  # agent version (string 1)
        + b"\x19\x03\xe8"                     # event time 1000 ms
        + b"\xf6"                             # no UTC offset: TimestampLocal in Z
        + b"\x19\x02\x58"                     # window start 600 ms before the event time
        + b"\x9f\x01\x50" + guid              # [_ ConnectionCreate, id (string 2)
        + b"\x8b\x05"                         # [11 fields, +5 ms
        + b"\x44\x0a\x00\x00\x01"             # 10.0.0.1 (string 3)
        + b"\x44\x01\x02\x03\x04"             # 1.2.3.4 (string 4)
        + b"\x19\x9c\x40\x19\x01\xbb"         # ports 40000, 443
        + b"\x02\x00\x19\x01\x2c\x01\x01"     # TCP out, 0 in, 300 out, 1 hit, 1 dns hit
        + b"\x64h.io"                         # host name (string 5)
        + b"\x89\x02"                         # [9 fields, +2 ms
        + b"\xd8\x19\x03\xd8\x19\x04"         # references to strings 3 and 4
        + b"\x19\x9c\x41\x19\x01\xbb\x02\x00\x19\x01\x2c\x01"
        + b"\xff\xff")                        # end of event, end of message
    assert body == expected, body


def test_items_split_at_the_size_cap_and_every_message_stands_alone():
    encoder, sent = _encoder(512)
    encoder.begin(1000, 0)
    encoder.event(events.CONNECTION, "Triggered", "Security")
    for i in range(100):
        encoder.item(events.CONNECTION_FIELDS,
                     _connection(i, "1.2.%d.%d" % (i // 200, i % 200), 40000 + i))
    messages = encoder.finish()
    assert messages == len(sent) and messages > 3
    for body in sent:
        assert len(body) <= 512 and is_compact(body) and body[-2:] == b"\xff\xff"
        # the local address is written out once per message, then referenced
        assert body.count(b"\x44\x0a\x00\x00\x01") == 1


def test_no_allocation_per_connection_item():
    only_on_micropython("heap allocated per connection item")
    encoder, sent = _encoder()
    encoder.begin(1000, 0)
    encoder.event(events.CONNECTION, "Triggered", "Security")
    values = _connection(0, "1.2.3.4", 40000)
    encoder.item(events.CONNECTION_FIELDS, values)
    gc.collect()
    before = gc.mem_alloc()
    for i in range(50):
        values[0] = i
        values[3] = 40000 + i
        encoder.item(events.CONNECTION_FIELDS, values)
    used = gc.mem_alloc() - before
    assert used == 0, "allocated %d bytes for 50 items" % used
    encoder.finish()


def test_an_ipv6_address_is_a_shared_16_byte_string():
    encoder, sent = _encoder()
    encoder.begin(1000, 0)
    encoder.event(events.CONNECTION, "Triggered", "Security")
    values = _connection(0, "2001:db8::ab", 40000)
    values[1] = "fe80::1"
    encoder.item(events.CONNECTION_FIELDS, values)
    values[0] = 1
    encoder.item(events.CONNECTION_FIELDS, values)
    encoder.finish()
    body = sent[0]
    local = b"\x50\xfe\x80" + bytes(12) + b"\x00\x01"
    remote = b"\x50\x20\x01\x0d\xb8" + bytes(10) + b"\x00\xab"
    assert body.count(local) == 1 and body.count(remote) == 1
    # the second item refers to both: strings 3 and 4 of the message
    assert body.count(local + remote) == 1 and b"\xd8\x19\x03\xd8\x19\x04" in body


def test_no_allocation_per_ipv6_connection_item():
    only_on_micropython("heap allocated per IPv6 connection item")
    encoder, sent = _encoder()
    encoder.begin(1000, 0)
    encoder.event(events.CONNECTION, "Triggered", "Security")
    values = _connection(0, "2001:db8::ab", 40000)
    values[1] = "2001:db8::2"
    encoder.item(events.CONNECTION_FIELDS, values)
    gc.collect()
    before = gc.mem_alloc()
    for i in range(50):
        values[0] = i
        values[3] = 40000 + i
        encoder.item(events.CONNECTION_FIELDS, values)
    used = gc.mem_alloc() - before
    assert used == 0, "allocated %d bytes for 50 items" % used
    encoder.finish()
