"""canonical_address and parse_address against CPython's ipaddress module (the oracle), over
random addresses of both families written in every spelling a device or a log may use."""
import ipaddress

from hypothesis import given, settings, strategies as st

from microagent import events

GROUPS = st.lists(st.integers(0, 0xFFFF), min_size=8, max_size=8)
# Zero runs make the "::" choices interesting: groups drawn mostly from 0 and 1.
SPARSE_GROUPS = st.lists(st.sampled_from((0, 0, 0, 1, 0xFFFF, 0x2001)), min_size=8, max_size=8)


def oracle(text):
    """The canonical text by the rules of docs/spec.md, computed with ipaddress."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Address(int(address)))  # the zone dropped
    return str(address)


@st.composite
def spellings(draw):
    """An IPv6 address (sometimes IPv4-mapped or IPv4-embedded) in a random valid spelling."""
    groups = draw(st.one_of(GROUPS, SPARSE_GROUPS))
    if draw(st.booleans()) and draw(st.booleans()):
        groups[:6] = [0, 0, 0, 0, 0, 0xFFFF]
    texts = [("%x" % g).zfill(draw(st.integers(1, 4))) for g in groups]
    if draw(st.booleans()):  # an embedded IPv4 tail
        tail = "%d.%d.%d.%d" % (groups[6] >> 8, groups[6] & 0xFF, groups[7] >> 8, groups[7] & 0xFF)
        texts[6:] = [tail]
    hex_groups = 8 if len(texts) == 8 else 6  # an IPv4 tail is never part of "::"
    zeros = [i for i in range(hex_groups) if groups[i] == 0]
    if zeros and draw(st.booleans()):  # "::" over some run of zero groups, not always the best
        start = draw(st.sampled_from(zeros))
        end = start
        while end + 1 < hex_groups and groups[end + 1] == 0 and draw(st.booleans()):
            end += 1
        text = ":".join(texts[:start]) + "::" + ":".join(texts[end + 1:])
    else:
        text = ":".join(texts)
    if draw(st.booleans()):
        text = text.upper()
    if draw(st.booleans()):
        text += "%" + draw(st.sampled_from(("eth0", "1", "wlan0")))
    return text, groups


@settings(max_examples=3000, deadline=None)
@given(spellings())
def test_every_spelling_has_the_oracles_canonical_text(case):
    text, groups = case
    expected = oracle(text)
    assert expected is not None, text
    assert events.canonical_address(text) == expected
    halves = [0] * 10
    n = events.parse_address(text, halves, 1)
    if n == 2:
        assert groups[:6] == [0, 0, 0, 0, 0, 0xFFFF]
        assert halves[1:3] == groups[6:]
    else:
        assert n == 8 and halves[1:9] == groups
    assert events.format_address(halves, 1, n) == expected


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.integers(0, 255), min_size=4, max_size=4))
def test_ipv4_is_dotted_decimal(octets):
    text = ".".join(str(o) for o in octets)
    assert events.canonical_address(text) == oracle(text) == text
    assert events.canonical_address("::ffff:" + text) == text
    halves = [0] * 8
    assert events.parse_address(text, halves, 0) == 2
    assert events.format_address(halves, 0, 2) == text


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet="0123456789abcdefABCDEFg.:%x ", max_size=45))
def test_any_text_is_an_address_exactly_when_the_oracle_says_so(text):
    assert events.canonical_address(text) == oracle(text)
    assert (events.parse_address(text, [0] * 8, 0) == 0) == (oracle(text) is None)
