# The drop-new caches: identity, aggregation, overflow, counters, reset.
from microagent.cache import DnsTable, HIT, LOST, LoginCache, NEW, NetworkCache, ProcessCache


def _rows(cache, width):
    return [tuple(r) for r in cache.rows([None] * width)]


def test_process_identity_is_commandline_and_uid():
    cache = ProcessCache(8)
    assert cache.record(5, "/bin/ls", 0, 100, 1, 1, None, None) == NEW
    assert cache.record(9, "/bin/ls", 0, 101, 2, 0, None, None) == HIT
    assert cache.record(9, "/bin/ls", 1000, 102, 2, 1, None, None) == NEW
    assert cache.record(9, "/bin/ls -l", 0, 103, 2, 1, None, None) == NEW
    rows = _rows(cache, 9)
    # first occurrence keeps its timestamp, pid, ppid and type
    assert rows[0] == (5, 100, 1, 0, "/bin/ls", 1, 2, None, None)
    assert [r[6] for r in rows] == [2, 1, 1]


def test_connection_identity_ignores_direction_and_sums_bytes():
    cache = NetworkCache(8)
    assert cache.record(1, 0, "10.0.0.1", 4000, "1.2.3.4", 443, 10, 1, 2) == NEW
    assert cache.record(2, 0, "10.0.0.1", 4000, "1.2.3.4", 443, 5, 2, 1) == HIT
    assert cache.record(3, 1, "10.0.0.1", 4000, "1.2.3.4", 443, 5, 2, 2) == NEW  # UDP
    assert cache.record(3, 0, "10.0.0.1", 4001, "1.2.3.4", 443, 5, 2, 2) == NEW
    assert cache.record(3, 0, "10.0.0.1", 4000, "1.2.3.5", 443, 5, 2, 2) == NEW
    assert cache.record(3, 0, "10.0.0.2", 4000, "1.2.3.4", 443, 5, 2, 2) == NEW
    assert cache.record(3, 0, "10.0.0.1", 4000, "1.2.3.4", 444, 5, 2, 2) == NEW
    rows = _rows(cache, 10)
    assert rows[0] == (1, "10.0.0.1", "1.2.3.4", 4000, 443, 0, 15, 3, 2, 2)
    assert len(rows) == 6


def test_full_network_cache_drops_new_entries_and_keeps_counting_cached_ones():
    cache = NetworkCache(3)
    for port in range(10):
        cache.record(port, 0, "10.0.0.1", 5000 + port, "1.1.1.1", 80, 1, 1, 2)
    assert cache.count == 3
    assert cache.dropped == 7
    assert cache.record(99, 0, "10.0.0.1", 5001, "1.1.1.1", 80, 7, 0, 2) == HIT
    assert cache.record(99, 0, "10.0.0.1", 5009, "1.1.1.1", 80, 7, 0, 2) == LOST
    assert cache.dropped == 8
    rows = _rows(cache, 10)
    # exactly the first three distinct flows survive, in first-occurrence order
    assert [r[3] for r in rows] == [5000, 5001, 5002]
    assert [r[8] for r in rows] == [1, 2, 1]
    assert rows[1][6] == 8
    assert cache.evicted == 0


def test_reset_empties_cache_and_counters():
    cache = NetworkCache(2)
    for port in range(5):
        cache.record(0, 0, "10.0.0.1", port, "1.1.1.1", 80, 1, 1, 0)
    cache.reset()
    assert cache.count == 0 and cache.dropped == 0
    assert cache.record(0, 0, "10.0.0.1", 4, "1.1.1.1", 80, 1, 1, 0) == NEW
    assert _rows(cache, 10)[0][3] == 4


def test_byte_counts_saturate_instead_of_overflowing():
    cache = NetworkCache(1)
    cache.record(0, 0, "10.0.0.1", 1, "1.1.1.1", 80, 0xFFFFFFF0, 0, 0)
    cache.record(0, 0, "10.0.0.1", 1, "1.1.1.1", 80, 0x100, 0, 0)
    assert _rows(cache, 10)[0][6] == 0xFFFFFFFF


def test_many_colliding_keys_all_found():
    cache = NetworkCache(300)
    for i in range(300):
        assert cache.record(i, i % 3, "10.%d.0.1" % (i % 7), i, "1.1.%d.1" % (i % 5), 80, 1, 0, 0) == NEW
    for i in range(300):
        assert cache.record(i, i % 3, "10.%d.0.1" % (i % 7), i, "1.1.%d.1" % (i % 5), 80, 1, 0, 0) == HIT
    assert cache.count == 300 and cache.dropped == 0


def test_dns_table_counts_and_keeps_latest_name():
    dns = DnsTable(2)
    assert dns.record("a.example", "1.2.3.4") == NEW
    assert dns.record("b.example", "1.2.3.4") == HIT
    assert dns.record("c.example", "5.6.7.8") == NEW
    assert dns.record("d.example", "9.9.9.9") == LOST
    assert dns.lookup("1.2.3.4") == (2, "b.example")
    assert dns.lookup("9.9.9.9") == (0, None)
    assert dns.dropped == 1


def test_logins_are_never_aggregated():
    logins = LoginCache(2)
    assert logins.record(1, 0, 10, "root", "pts/0", "10.0.0.9") == NEW
    assert logins.record(2, 0, 10, "root", "pts/0", "10.0.0.9") == NEW
    assert logins.record(3, 2, 11, "root", "pts/1", None) == LOST
    assert logins.count == 2 and logins.dropped == 1
    assert _rows(logins, 6)[1] == (2, 0, 10, "root", "pts/0", "10.0.0.9")
