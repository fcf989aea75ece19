# Event model: string capping, IPv4 halves, application protocols, timestamps, GUIDs.
from array import array

from microagent import events
from microagent.encode import guid, iso8601, new_guid


def test_short_string_is_returned_unchanged():
    text = "x" * 512
    assert events.cap_string(text) is text


def test_long_string_is_cut_to_2048_bytes_with_marker():
    capped = events.cap_string("a" * 100000)
    assert len(capped.encode()) == 2048
    assert capped.endswith("...[truncated]")
    assert capped.startswith("aaaa")


def test_cut_never_splits_a_multibyte_character():
    capped = events.cap_string("é" * 3000)
    raw = capped.encode()
    assert len(raw) <= 2048
    assert capped.endswith("...[truncated]")
    assert capped[:-len("...[truncated]")] == "é" * ((len(raw) - 14) // 2)


def test_string_of_exactly_2048_bytes_is_kept():
    text = "é" * 1024
    assert events.cap_string(text) == text


def test_parse_ipv4_into_halves():
    halves = array("H", [0, 0, 0, 0])
    assert events.parse_ipv4("192.168.1.200", halves, 2)
    assert halves[2] == (192 << 8) | 168
    assert halves[3] == (1 << 8) | 200
    assert events.format_ipv4(halves[2], halves[3]) == "192.168.1.200"


def test_parse_ipv4_rejects_malformed():
    halves = [0, 0]
    for bad in ("", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1..2.3", "a.b.c.d", "01.2.3.4",
                "1.2.3.4 ", "1234.1.1.1"):
        assert not events.parse_ipv4(bad, halves, 0), bad


def test_application_protocol_by_direction():
    assert events.application_protocol(40000, 443, 2) == "HTTPS"
    assert events.application_protocol(8883, 50000, 1) == "MQTT"
    assert events.application_protocol(53, 40000, 1) == "DNS"
    assert events.application_protocol(40000, 53, 0) == "DNS"
    assert events.application_protocol(40000, 9999, 2) == "UNKNOWN"
    assert events.application_protocol(40000, 8, 2) == "UNKNOWN"


def test_iso8601_utc_and_local():
    assert iso8601(0) == "1970-01-01T00:00:00.000Z"
    assert iso8601(1767225600123) == "2026-01-01T00:00:00.123Z"
    assert iso8601(951782400000) == "2000-02-29T00:00:00.000Z"
    assert iso8601(4102444799999) == "2099-12-31T23:59:59.999Z"
    assert iso8601(1767225600000, 120) == "2026-01-01T02:00:00.000+02:00"
    assert iso8601(1767225600000, -90) == "2025-12-31T22:30:00.000-01:30"


def test_guid_is_random_version_4():
    a = new_guid()
    b = new_guid()
    assert a != b
    assert len(a) == 36
    assert a[14] == "4"
    assert a[19] in "89ab"
    assert [len(part) for part in a.split("-")] == [8, 4, 4, 4, 12]


def test_guid_marks_version_and_variant_only():
    # RFC 4122: the high nibble of byte 6 is the version, the top two bits of byte 8 are 10.
    assert guid(b"\xff" * 16, 5) == "ffffffff-ffff-5fff-bfff-ffffffffffff"
    assert guid(b"\x00" * 16, 4) == "00000000-0000-4000-8000-000000000000"
