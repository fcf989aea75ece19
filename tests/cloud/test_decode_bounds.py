"""Bounded decoding (issue 24, item 2): compact bodies that expand far past their size through
shared values (CBOR tags 28/29) or string references (tag 25), deep nesting, and numbers JSON
has no spelling for (NaN, infinities) are refused with one line, by the library and by
`microagent decode` under an address-space cap. The bombs are built here with cbor2's own
encoder (CBORTag), not with our encoder; the largest message our encoder can write still reads."""
import json
import os
import resource
import subprocess
import sys

import cbor2
import pytest
from cbor2 import CBORTag

from microagent import events
from microagent.compact import CompactEncoder
from microagent.decode import (MAX_NESTING, MAX_NODES, MAX_STRING_BYTES, DecodeError,
                               decode_body, message_text)
from microagent.encode import MAX_MESSAGE_SIZE

MICROAGENT = os.path.join(os.path.dirname(sys.executable), "microagent")
GUID = bytes(range(16))
AGENT_ID = "6c7a4b1e-2f0d-4c55-9a51-000000000001"
CAP_BYTES = 1 << 30   # the address space a `microagent decode` child may use


def compact(item, agent=GUID):
    """A compact message (tag 256 around the envelope) with one generic event holding ITEM."""
    return cbor2.dumps(CBORTag(256, [1, agent, "0.1.0", 1767225600000, 0, 0,
                                     [4, GUID, "SystemInformation", "Periodic", "Security", item]]))


def shared_value_bomb(levels=9, fan_out=10):
    """LEVELS shareable arrays (tag 28), each the next one's first element followed by
    FAN_OUT - 1 references to it (tag 29, numbered in the order the 28s open): FAN_OUT ** LEVELS
    leaves (10^9) in a few hundred bytes."""
    value = CBORTag(28, [0] * fan_out)
    for number in range(levels - 2, -1, -1):
        value = CBORTag(28, [value] + [CBORTag(29, number + 1)] * (fan_out - 1))
    return compact({"nics": value})


def stringref_bomb(length=200000, references=5000):
    """One string of LENGTH bytes (the agent id: the first string of the namespace, number 0)
    and REFERENCES references to it (tag 25): LENGTH * REFERENCES bytes of text, 1 GB."""
    return compact({"os_dist": [CBORTag(25, 0)] * references}, agent="x" * length)


def nested(depth):
    """DEPTH arrays of one, each inside the last, as raw bytes (cbor2's encoder recurses)."""
    placeholder = b"nested arrays go here"
    body = compact({"vlans": placeholder})
    return body.replace(cbor2.dumps(placeholder), b"\x81" * depth + b"\x00")


def test_the_bombs_are_what_they_claim():
    assert len(shared_value_bomb()) < 500
    assert len(shared_value_bomb(levels=6, fan_out=8)) < 300
    body = stringref_bomb()
    assert 200000 < len(body) < 256 * 1024
    # cbor2 resolves the references to one object; expanded, the text is 1 GB
    agent = cbor2.loads(body)[1]
    assert len(agent) * 5000 >= 10 ** 9


@pytest.mark.parametrize("body,reason", [
    (shared_value_bomb(), "too large expanded"),
    (shared_value_bomb(levels=6, fan_out=8), "too large expanded"),   # 262,144 leaves, < 300 B
    (stringref_bomb(), "too large expanded"),
    (nested(MAX_NESTING + 5), "nested deeper than %d" % MAX_NESTING),
    (nested(200000), "nest"),   # cbor2 stops it first
    (compact({"os_arch": float("nan")}), "not finite"),
    (compact({"os_arch": float("inf")}), "not finite"),
    (compact({"os_arch": [float("-inf")]}), "not finite"),
])
def test_bombs_and_non_finite_floats_are_refused_in_one_line(body, reason):
    with pytest.raises(DecodeError) as caught:
        decode_body(body)
    assert reason in str(caught.value) and "\n" not in str(caught.value)


def test_a_shared_value_that_contains_itself_is_refused():
    body = compact({"nics": CBORTag(28, [1, CBORTag(29, 0)])})
    with pytest.raises(DecodeError, match="contains itself"):
        decode_body(body)


def test_a_few_shared_values_within_the_limits_still_read():
    body = compact({"nics": [CBORTag(28, ["eth0"]), CBORTag(29, 0), CBORTag(29, 0)]})
    assert decode_body(body)["Events"][0]["Payload"] == [{"nics": [["eth0"]] * 3}]


@pytest.mark.parametrize("text", [b'{"Events": [], "a": NaN}', b'{"Events": [], "a": Infinity}',
                                  b'{"Events": [], "a": [-Infinity]}', b'{"Events": [], "a": 1e999}',
                                  b'{"Events": [], "a": -1e400}'])
def test_json_bodies_with_numbers_json_cannot_spell_are_refused(text):
    with pytest.raises(DecodeError, match="^not JSON: "):
        decode_body(text)


def test_decoded_messages_are_strict_json():
    message = decode_body(b'{"Events": [], "a": 1.5e300}')
    assert json.loads(message_text(message), parse_constant=pytest.fail) == message
    with pytest.raises(ValueError):
        message_text({"a": float("nan")})


def largest_login_message():
    """The largest message our encoder writes: 256 KB of Login items whose three strings are
    2,048 bytes each, every one after the first a string reference."""
    out = []
    encoder = CompactEncoder(AGENT_ID, lambda buf, n: out.append(bytes(buf[:n])), MAX_MESSAGE_SIZE)
    encoder.begin(1767225600000)
    encoder.event(events.LOGIN, "Triggered", "Security")
    while not out:
        encoder.item(events.LOGIN_FIELDS, (0, "LoginFailed", 1, "u" * 2048, "e" * 2048, "r" * 2048))
    return out[0]


def test_the_largest_legal_message_reads_within_the_limits():
    body = largest_login_message()
    assert len(body) > 250 * 1024
    message = decode_body(body)
    items = message["Events"][0]["Payload"]
    assert len(items) > 19000
    assert items[-1]["user_name"] == "u" * 2048 and items[-1]["remote_address"] == "r" * 2048
    expanded = len(items) * 3 * 2048
    assert 100 << 20 < expanded < MAX_STRING_BYTES / 2 and len(body) < MAX_NODES / 2


def _capped():
    resource.setrlimit(resource.RLIMIT_AS, (CAP_BYTES, CAP_BYTES))


@pytest.mark.parametrize("body,reason", [
    (shared_value_bomb(), "too large expanded"),
    (shared_value_bomb(levels=6, fan_out=8), "too large expanded"),   # 262,144 leaves, < 300 B
    (stringref_bomb(), "too large expanded"),
    (compact({"os_arch": float("nan")}), "not finite"),
])
def test_microagent_decode_refuses_bombs_under_a_memory_cap(tmp_path, body, reason):
    path = tmp_path / "body.cbor"
    path.write_bytes(body)
    done = subprocess.run([MICROAGENT, "decode", str(path)], capture_output=True, text=True,
                          preexec_fn=_capped, timeout=300)
    assert done.returncode == 1 and done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("microagent: error: %s: " % path), lines
    assert reason in lines[0] and "Traceback" not in done.stderr


def test_microagent_decode_prints_strict_json_and_names_a_nan_line(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_text('{"Events": [], "a": 1.25}\n{"Events": [], "a": NaN}\n')
    done = subprocess.run([MICROAGENT, "decode", str(path)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 1
    assert [json.loads(line) for line in done.stdout.splitlines()] == [{"Events": [], "a": 1.25}]
    assert done.stderr.splitlines() == [
        "microagent: error: %s:2: not JSON: NaN is not a number JSON allows" % path]
