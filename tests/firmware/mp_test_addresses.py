# IPv4 and IPv6 addresses: parse_address into 16-bit halves, format_address and
# canonical_address (RFC 5952 text; IPv4-mapped reported as IPv4), with no allocation to parse.
from array import array

from microagent import events
from mp_assert import only_on_micropython

# (input, canonical text); the expectations are RFC 5952's, written out by hand.
CANONICAL = (
    ("::", "::"),
    ("::1", "::1"),
    ("0:0:0:0:0:0:0:1", "::1"),
    ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
    ("2001:0db8:0000:0000:0000:ff00:0042:8329", "2001:db8::ff00:42:8329"),
    ("1:0:0:1:0:0:0:1", "1:0:0:1::1"),
    ("1:0:0:1:0:0:1:1", "1::1:0:0:1:1"),  # the first of two equal runs
    ("1:0:1:1:1:1:1:1", "1:0:1:1:1:1:1:1"),  # one zero group is not compressed
    ("1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0"),
    ("::2:3:4:5:6:7:8", "0:2:3:4:5:6:7:8"),
    ("::ffff:1.2.3.4", "1.2.3.4"),
    ("::FFFF:c000:0201", "192.0.2.1"),
    ("0:0:0:0:0:ffff:10.0.0.1", "10.0.0.1"),
    ("::1.2.3.4", "::102:304"),
    ("64:ff9b::1.2.3.4", "64:ff9b::102:304"),
    ("1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:102:304"),
    ("fe80::1%eth0", "fe80::1"),
    ("::ffff:1.2.3.4%1", "1.2.3.4"),
    ("10.0.0.1", "10.0.0.1"),
)

INVALID = ("", ":", ":::", "1:", ":1", ":1::", "1::2::3", "1:2:3:4:5:6:7:8:9",
           "1:2:3:4:5:6:7:8::", "::1:2:3:4:5:6:7:8", "12345::", "g::", "1:2:3:4:5:6:7",
           "fe80::1%", "fe80::1%a%b", "::01.2.3.4", "::1.2.3", "::1.2.3.4.5", "::256.1.1.1",
           "1.2.3.4::", "1:2:3:4:5:6:7:1.2.3.4", "::1.2.3.4:1", "01.2.3.4", "1.2.3", " ::1",
           "::1 ", "1::1.2.3.", "[::1]")


def test_canonical_text_of_every_spelling():
    for text, canonical in CANONICAL:
        assert events.canonical_address(text) == canonical, text


def test_invalid_addresses_are_none():
    for text in INVALID:
        assert events.canonical_address(text) is None, text
        assert events.parse_address(text, [0] * 8, 0) == 0, text


def test_parse_address_writes_groups_at_the_offset():
    halves = array("H", [7] * 10)
    assert events.parse_address("2001:db8::ff00:42:8329", halves, 2) == 8
    assert list(halves) == [7, 7, 0x2001, 0xDB8, 0, 0, 0, 0xFF00, 0x42, 0x8329]
    assert events.format_address(halves, 2, 8) == "2001:db8::ff00:42:8329"


def test_mapped_address_parses_as_ipv4_halves():
    halves = array("H", [0] * 8)
    assert events.parse_address("::ffff:192.168.1.200", halves, 0) == 2
    assert halves[0] == (192 << 8) | 168 and halves[1] == (1 << 8) | 200
    assert events.format_address(halves, 0, 2) == "192.168.1.200"


def test_format_address_of_mapped_groups_is_ipv4():
    assert events.format_address([0, 0, 0, 0, 0, 0xFFFF, 0x0A00, 0x0001], 0, 8) == "10.0.0.1"


def test_canonical_ipv4_is_returned_unchanged():
    text = "10.20.30.40"
    assert events.canonical_address(text) is text


def test_parse_address_allocates_nothing():
    only_on_micropython("heap allocated parsing addresses")
    import gc
    halves = array("H", [0] * 8)
    texts = ("2001:DB8:0:0:0:0:0:1", "::ffff:10.0.0.1", "fe80::1%eth0", "10.0.0.1", "1::2::3")
    gc.collect()
    before = gc.mem_alloc()
    for _ in range(20):
        for text in texts:
            events.parse_address(text, halves, 0)
    used = gc.mem_alloc() - before
    assert used == 0, "allocated %d bytes parsing 100 addresses" % used
