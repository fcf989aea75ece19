"""What a hostile device with valid credentials sends (issue 24): well-formed messages with one
typed poison each, dates at the ends of time, control characters, hundreds of distinct
DroppedEvents collectors, a shared-value CBOR bomb and a CBOR NaN. Written by hand here, with
its own CBOR writer, so no bug of the agent's encoder or cbor2's can hide behind itself."""
import json
import struct

import raw_mqtt
from raw_mqtt import RawClient

WHEN = "2026-01-01T00:10:10.000Z"
CONTROL_ARGV = "/tmp/x \x1b]0;pwned\x07 \x1b[31mHigh dev-a brute-force\nHigh dev-a brute-force\r\x9b"
END_OF_TIME = ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00")


def event(name, items, when=WHEN):
    return {"Id": "00000000-0000-4000-8000-000000000001", "TimestampLocal": when,
            "TimestampUTC": when, "Category": "Triggered", "Name": name, "EventType": "Security",
            "IsEmpty": False, "PayloadSchemaVersion": "1.0", "Payload": items}


def message(*events):
    return json.dumps({"AgentVersion": "0.1.0", "AgentId": "6c7a4b1e-0000-4000-8000-00000000bad0",
                       "MessageSchemaVersion": "1.0", "Events": list(events)}).encode()


def process(**fields):
    item = {"timestamp": WHEN, "process_id": 100, "parent_process_id": 1, "user_id": 1000,
            "commandline": "/usr/bin/true", "type": "exec", "hit_count": 1, "user_name": "pi"}
    item.update(fields)
    return item


def connection(**fields):
    item = {"timestamp": WHEN, "local_address": "192.168.1.20", "remote_address": "198.51.100.7",
            "local_port": 40000, "remote_port": 443, "transport_protocol": "TCP",
            "application_protocol": "HTTPS", "bytes_in": 1, "bytes_out": 1, "hit_count": 1,
            "dns_hit_count": 0, "extended_properties": {}, "direction": "out"}
    item.update(fields)
    return item


def login(**fields):
    item = {"timestamp": WHEN, "operation": "LoginFailed", "process_id": 1, "user_name": "root",
            "executable": "sshd", "remote_address": "198.51.100.8"}
    item.update(fields)
    return item


def dropped(**fields):
    item = {"timestamp": WHEN, "collector": "ProcessCreate", "cache_size": 256, "dropped": 1,
            "evicted": 0, "unsupported": 0}
    item.update(fields)
    return item


def typed_poison():
    """One JSON message per poison: a field of the wrong type, or a time at an end of time."""
    bodies = [message(event("ProcessCreate", [process(commandline=["/bin/sh", "-c", "x"])])),
              message(event("ConnectionCreate", [connection(remote_address={"ip": "1.2.3.4"})])),
              message(event("ConnectionCreate", [connection(local_port=[22, 23])])),
              message(event("DroppedEvents", [dropped(collector=["ProcessCreate"])])),
              message(event("ProcessCreate", [process(user_id=[0])])),
              message(event("ProcessCreate", [process(user_id={"uid": 0})])),
              message(event("ConnectionCreate", [connection(direction=["out"])])),
              message(event("ConnectionCreate", [connection(direction={"d": "in"})])),
              message(event("Login", [login(remote_address={"a": 1})]))]
    for stamp in END_OF_TIME:
        bodies.append(message(event("ProcessCreate", [process(timestamp=stamp)], when=stamp)))
        bodies.append(message(event("Login", [login(timestamp=stamp)], when=stamp)))
    return bodies


def control_characters():
    return message(event("ProcessCreate", [process(commandline=CONTROL_ARGV,
                                                   user_name="pi\x1b]0;pwned\x07")]),
                   event("DroppedEvents", [dropped(collector="Process\x1b[31mHigh")]))


def distinct_collectors(count=400):
    return message(event("DroppedEvents", [dropped(collector="collector-%03d" % i)
                                           for i in range(count)]))


# A CBOR writer (RFC 8949) of just what these bodies need.
def _head(major, n):
    if n < 24:
        return bytes([major << 5 | n])
    for extra, fmt in ((24, "!B"), (25, "!H"), (26, "!I"), (27, "!Q")):
        if n < 1 << (8 * struct.calcsize(fmt)):
            return bytes([major << 5 | extra]) + struct.pack(fmt, n)
    raise ValueError(n)


def cbor_uint(n):
    return _head(0, n)


def cbor_bytes(data):
    return _head(2, len(data)) + data


def cbor_text(text):
    data = text.encode("utf-8")
    return _head(3, len(data)) + data


def cbor_array(items):
    return _head(4, len(items)) + b"".join(items)


def cbor_map(pairs):
    return _head(5, len(pairs)) + b"".join(k + v for k, v in pairs)


def cbor_tag(number, content):
    return _head(6, number) + content


CBOR_NAN = b"\xf9\x7e\x00"          # half-precision NaN
CBOR_INFINITY = b"\xf9\x7c\x00"     # half-precision +Infinity


def compact_generic(item_map):
    """A compact message (docs/compact-encoding.md: tag 256, version 1, agent id, agent version,
    time, UTC offset, window start) of one generic event (kind 4) whose one item is ITEM_MAP
    (CBOR bytes of a map)."""
    envelope = [cbor_uint(1), cbor_bytes(bytes(range(16))), cbor_text("0.1.0"),
                cbor_uint(1767226210000), cbor_uint(0), cbor_uint(0)]
    generic = cbor_array([cbor_uint(4), cbor_bytes(bytes(16)), cbor_text("X"), cbor_text("Triggered"),
                          cbor_text("Security"), item_map])
    return cbor_tag(256, cbor_array(envelope + [generic]))


def shared_value_bomb(levels=8, fan_out=10):
    """A compact message of a few hundred bytes whose one item, expanded, holds
    FAN_OUT ** (LEVELS + 1) leaves (10^9 by default): level 0 is a shared array of FAN_OUT
    zeros (tag 28), each next level a shared array of FAN_OUT references (tag 29) to the one
    before."""
    pairs = [(cbor_text("l0"), cbor_tag(28, cbor_array([cbor_uint(0)] * fan_out)))]
    for level in range(1, levels + 1):
        pairs.append((cbor_text("l%d" % level),
                      cbor_tag(28, cbor_array([cbor_tag(29, cbor_uint(level - 1))] * fan_out))))
    return compact_generic(cbor_map(pairs))


def string_reference_bomb(length=4096, references=75000):
    """A compact message under IoT Hub's 256 KB whose one item holds a LENGTH-byte string and
    REFERENCES string references to it (tag 25: 3 bytes each), about 300 MB expanded. Text and
    byte strings of 3 bytes or more are numbered as they appear (the stringref namespace of tag
    256): the agent id 0, "0.1.0" 1, the event id 2, "Triggered" 3, "Security" 4, the long
    one 5."""
    text = "A" * length
    item = cbor_map([(cbor_text("s"), cbor_array([cbor_text(text)]
                                                 + [cbor_tag(25, cbor_uint(5))] * references))])
    return compact_generic(item)


def not_finite():
    """Compact messages holding a NaN, and an Infinity, where a generic item's value goes."""
    return [compact_generic(cbor_map([(cbor_text("v"), CBOR_NAN)])),
            compact_generic(cbor_map([(cbor_text("v"), CBOR_INFINITY)]))]


def send(hub, device, bodies):
    """Publishes BODIES as DEVICE over the hub's plain port, QoS 1: each stored when acked."""
    client = RawClient(hub, timeout=30).login(hub, device)
    try:
        for number, body in enumerate(bodies, 1):
            client.send(raw_mqtt.publish("devices/%s/messages/events/" % device, body, qos=1,
                                         packet_id=number))
            assert client.recv_exact(4) == b"\x40\x02" + number.to_bytes(2, "big")
    finally:
        client.close()
