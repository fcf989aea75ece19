# The 31-bit small-int edges of a 32-bit board (micropython32 runs this module too): IPv4
# addresses as two 16-bit halves, counters past 2**30 kept in 32-bit arrays, and ms ticks that
# wrap around (at 2**30 on a 32-bit port, where the wrap comes after 12.4 days of uptime).
import gc

from microagent import session
from microagent.cache import NetworkCache
from microagent.clock import ticks_add, ticks_diff
from microagent.events import parse_ipv4
from microagent.mqtt import MQTTClient, run
from mp_assert import only_on_micropython

SMALL_INT_MAX = (1 << 30) - 1  # on a 32-bit MicroPython; 64-bit ports have room to spare


def _rows(cache):
    return [tuple(r) for r in cache.rows([None] * 10)]


def test_ipv4_halves_of_the_extreme_addresses():
    halves = [0, 0, 0, 0]
    for text, high, low in (("255.255.255.255", 0xFFFF, 0xFFFF), ("128.0.0.1", 0x8000, 1),
                            ("0.0.0.0", 0, 0), ("192.168.255.254", 0xC0A8, 0xFFFE)):
        assert parse_ipv4(text, halves, 2), text
        assert (halves[2], halves[3]) == (high, low), text
        assert halves[2] <= SMALL_INT_MAX and halves[3] <= SMALL_INT_MAX


def test_parsing_the_highest_address_allocates_nothing():
    # 255.255.255.255 as one int is 2**32 - 1: a heap-allocated long int on a 32-bit board.
    halves = [0, 0]
    parse_ipv4("255.255.255.255", halves, 0)  # warm up (first call may intern)
    only_on_micropython("heap allocated parsing the highest address")
    gc.collect()
    before = gc.mem_alloc()
    for _ in range(20):
        parse_ipv4("255.255.255.255", halves, 0)
    assert gc.mem_alloc() - before == 0


def test_high_addresses_are_cache_keys_and_come_back_dotted():
    cache = NetworkCache(4)
    cache.record(1, 0, "255.255.255.255", 65535, "128.0.0.0", 443, 1, 2, 2)
    cache.record(2, 0, "255.255.255.255", 65535, "128.0.0.0", 443, 1, 2, 2)
    cache.record(3, 0, "255.255.255.254", 65535, "128.0.0.0", 443, 1, 2, 2)
    rows = _rows(cache)
    assert [(r[1], r[2], r[8]) for r in rows] == [("255.255.255.255", "128.0.0.0", 2),
                                                  ("255.255.255.254", "128.0.0.0", 1)]


def test_byte_counters_past_2_to_the_30():
    cache = NetworkCache(2)
    big = (1 << 30) + 5
    for _ in range(3):
        cache.record(1, 0, "10.0.0.1", 4000, "1.2.3.4", 443, big, 7, 2)
    row = _rows(cache)[0]
    assert row[6] == 3 * big == 3221225487  # past the 31-bit small ints, below 2**32
    assert row[7] == 21


def test_byte_counters_saturate_at_2_to_the_32_minus_1():
    cache = NetworkCache(2)
    for _ in range(5):
        cache.record(1, 0, "10.0.0.1", 4000, "1.2.3.4", 443, 1 << 30, 1 << 31, 2)
    row = _rows(cache)[0]
    assert row[6] == 0xFFFFFFFF and row[7] == 0xFFFFFFFF and row[8] == 5


def test_session_retry_across_the_ticks_wrap_around():
    policy = session.Session(retry_min_ms=1000, retry_max_ms=8000)
    now = ticks_add(0, -300)  # 300 ms before the ticks wrap around
    assert policy.next_action(now, 0) == session.CONNECT
    delay = policy.connection_lost(now)
    assert delay == 1000
    assert policy.next_action(ticks_add(now, 999), 0) == session.IDLE
    assert policy.next_action(ticks_add(now, 1000), 0) == session.CONNECT
    assert ticks_diff(ticks_add(now, 1000), now) == 1000


class _Stream:
    def __init__(self):
        self.written = bytearray()

    def write(self, data):
        self.written += data
        return len(data)

    def readinto(self, buf):
        return None

    def close(self):
        pass


def test_mqtt_keepalive_across_the_ticks_wrap_around():
    clock = [ticks_add(0, -1000)]  # one second before the wrap
    client = MQTTClient("dev", keepalive_s=4, clock=lambda: clock[0])
    stream = _Stream()
    client._sock = stream
    client._last_tx = clock[0]
    clock[0] = ticks_add(clock[0], 1999)  # past the wrap, just short of half the keep-alive
    run(client._keep_alive())
    assert bytes(stream.written) == b""
    clock[0] = ticks_add(clock[0], 1)
    run(client._keep_alive())
    assert bytes(stream.written) == b"\xc0\x00"  # PINGREQ after exactly 2 s
