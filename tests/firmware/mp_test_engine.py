# The engine over windows: aggregation, DNS join, drops, the warning, DroppedEvents, splitting.
import json

from microagent.engine import build_engine
from microagent.trace import Replay, TraceError
from mp_assert import raises

T0 = 1767225600.0


class Run:
    def __init__(self, sizes=(8, 8, 8), window_ms=60000, max_size=4096):
        self.messages = []
        self.warnings = []
        self.engine = build_engine(sizes[0], sizes[1], sizes[2], max_size,
                                   "00000000-0000-4000-8000-000000000001", self._sink,
                                   self.warnings.append, "json")
        self.replay = Replay(self.engine, window_ms)
        self.line = 0
        self.max_size = max_size

    def _sink(self, buffer, length):
        assert length <= len(buffer)
        self.messages.append((length, json.loads(bytes(buffer[:length]))))

    def feed(self, **event):
        self.line += 1
        self.replay.feed(json.dumps(event) + "\n", "t.jsonl:%d" % self.line)

    def close(self):
        self.replay.close_window()

    def events(self, name):
        found = []
        for _, message in self.messages:
            for event in message["Events"]:
                if event["Name"] == name:
                    found.append(event)
        return found

    def items(self, name):
        found = []
        for event in self.events(name):
            found.extend(event["Payload"])
        return found


def conn(run, t, lport, remote="1.2.3.4", rport=443, bytes_in=1, bytes_out=2, protocol="TCP"):
    run.feed(kind="connection", t=T0 + t, protocol=protocol, local_address="10.0.0.2",
             local_port=lport, remote_address=remote, remote_port=rport, bytes_in=bytes_in,
             bytes_out=bytes_out, direction="out")


def test_windows_split_on_the_trace_clock_and_empty_windows_send_nothing():
    run = Run()
    conn(run, 0, 1000)
    conn(run, 59.999, 1000)
    conn(run, 60, 1000)
    conn(run, 300, 1000)  # windows 2..4 are empty
    run.close()
    assert len(run.messages) == 3
    hits = [m["Events"][0]["Payload"][0]["hit_count"] for _, m in run.messages]
    assert hits == [2, 1, 1]
    stamps = [m["Events"][0]["Payload"][0]["timestamp"] for _, m in run.messages]
    assert stamps == ["2026-01-01T00:00:00.000Z", "2026-01-01T00:01:00.000Z",
                      "2026-01-01T00:05:00.000Z"]
    assert run.messages[0][1]["Events"][0]["TimestampUTC"] == "2026-01-01T00:01:00.000Z"


def test_process_aggregation_keeps_first_occurrence():
    run = Run()
    run.feed(kind="process", t=T0, type="exec", pid=10, ppid=1, uid=0, commandline="ls")
    run.feed(kind="process", t=T0 + 1, type="fork", pid=11, ppid=2, uid=0, commandline="ls")
    run.feed(kind="process", t=T0 + 2, type="exec", pid=12, ppid=2, uid=5, commandline="ls",
             user_name="bob", executable="/bin/ls")
    run.close()
    items = run.items("ProcessCreate")
    assert items[0] == {"timestamp": "2026-01-01T00:00:00.000Z", "process_id": 10,
                        "parent_process_id": 1, "user_id": 0, "commandline": "ls",
                        "type": "exec", "hit_count": 2}
    assert items[1]["user_name"] == "bob" and items[1]["executable"] == "/bin/ls"


def test_dns_join_counts_resolutions_and_names_the_latest():
    run = Run()
    run.feed(kind="dns", t=T0, hostname="old.example", address="1.2.3.4")
    run.feed(kind="dns", t=T0 + 1, hostname="new.example", address="1.2.3.4")
    conn(run, 2, 1000)
    conn(run, 3, 1001, remote="5.6.7.8")
    run.close()
    items = run.items("ConnectionCreate")
    assert items[0]["dns_hit_count"] == 2
    assert items[0]["extended_properties"] == {"host_name": "new.example"}
    assert items[1]["dns_hit_count"] == 0
    assert items[1]["extended_properties"] == {}


def test_overflow_drops_warns_once_naming_the_key_and_reports_dropped_events():
    run = Run(sizes=(8, 2, 8))
    for port in range(6):
        conn(run, port, 1000 + port)
    conn(run, 7, 1000)
    run.close()
    items = run.items("ConnectionCreate")
    assert [i["local_port"] for i in items] == [1000, 1001]
    assert items[0]["hit_count"] == 2
    assert len(run.warnings) == 1
    assert "NetworkActivity_CacheSize" in run.warnings[0]
    dropped = run.items("DroppedEvents")
    assert dropped == [{"timestamp": "2026-01-01T00:00:00.000Z", "collector": "ConnectionCreate",
                        "cache_size": 2, "dropped": 4, "evicted": 0}]
    event = run.events("DroppedEvents")[0]
    assert event["EventType"] == "Operational" and event["Category"] == "Periodic"


def test_warning_repeats_in_the_next_window_and_counters_reset():
    run = Run(sizes=(1, 8, 8))
    for t in (0, 1, 61, 62):
        run.feed(kind="process", t=T0 + t, type="exec", pid=1, ppid=0, uid=0,
                 commandline="cmd-%d" % t)
    run.close()
    assert len(run.warnings) == 2
    assert "Process_CacheSize" in run.warnings[1]
    assert [d["dropped"] for d in run.items("DroppedEvents")] == [1, 1]


def conn6(run, t, lport, remote, local="2001:db8::2", rport=443):
    run.feed(kind="connection", t=T0 + t, protocol="TCP", local_address=local,
             local_port=lport, remote_address=remote, remote_port=rport, bytes_in=1,
             bytes_out=2, direction="out")


def test_ipv6_spellings_of_one_connection_aggregate_under_the_canonical_text():
    run = Run()
    conn6(run, 0, 1000, "2001:DB8:0:0:0:0:0:AB", local="2001:0db8::0002")
    conn6(run, 1, 1000, "2001:db8::ab")
    conn6(run, 2, 1000, "2001:db8:0000::00ab%eth0")
    run.close()
    items = run.items("ConnectionCreate")
    assert len(items) == 1
    assert items[0]["local_address"] == "2001:db8::2"
    assert items[0]["remote_address"] == "2001:db8::ab"
    assert items[0]["hit_count"] == 3 and items[0]["bytes_out"] == 6
    assert run.items("DroppedEvents") == []


def test_ipv4_mapped_connections_are_ipv4_connections():
    run = Run()
    conn(run, 0, 1000, remote="1.2.3.4")
    run.feed(kind="connection", t=T0 + 1, protocol="TCP", local_address="::ffff:10.0.0.2",
             local_port=1000, remote_address="::FFFF:0102:0304", remote_port=443, bytes_in=1,
             bytes_out=2, direction="out")
    run.close()
    items = run.items("ConnectionCreate")
    assert len(items) == 1 and items[0]["hit_count"] == 2
    assert items[0]["local_address"] == "10.0.0.2" and items[0]["remote_address"] == "1.2.3.4"


def test_a_connection_with_one_ipv6_end_keeps_its_ipv4_end_as_ipv4_text():
    run = Run()
    conn6(run, 0, 1000, "::ffff:1.2.3.4", local="fe80::1")
    run.close()
    items = run.items("ConnectionCreate")
    assert items[0]["local_address"] == "fe80::1" and items[0]["remote_address"] == "1.2.3.4"


def test_aaaa_answers_join_ipv6_connections_in_any_spelling():
    run = Run()
    run.feed(kind="dns", t=T0, hostname="v6.example", address="2001:DB8::AB")
    run.feed(kind="dns", t=T0 + 1, hostname="v6.example", address="2001:db8:0:0:0:0:0:ab")
    run.feed(kind="dns", t=T0 + 1, hostname="mapped.example", address="::ffff:5.6.7.8")
    conn6(run, 2, 1000, "2001:db8::ab")
    conn(run, 3, 1001, remote="5.6.7.8")
    run.close()
    items = run.items("ConnectionCreate")
    # The firmware's IPv4 cache is reported before its IPv6 one.
    assert items[0]["remote_address"] == "5.6.7.8" and items[0]["dns_hit_count"] == 1
    assert items[0]["extended_properties"] == {"host_name": "mapped.example"}
    assert items[1]["dns_hit_count"] == 2
    assert items[1]["extended_properties"] == {"host_name": "v6.example"}


def test_the_ipv6_cache_drops_new_entries_beside_the_ipv4_one():
    run = Run(sizes=(8, 2, 8))
    for port in range(5):
        conn6(run, port, 1000 + port, "2001:db8::1")
    conn(run, 6, 2000)
    conn(run, 7, 2001)
    run.close()
    items = run.items("ConnectionCreate")
    assert [i["local_port"] for i in items] == [2000, 2001, 1000, 1001]
    assert run.items("DroppedEvents") == [{
        "timestamp": "2026-01-01T00:00:00.000Z", "collector": "ConnectionCreateIPv6",
        "cache_size": 2, "dropped": 3, "evicted": 0}]
    assert len(run.warnings) == 1 and "NetworkActivity_IPv6_CacheSize" in run.warnings[0]
    # The board's summary keeps IPv4 rows: the lost IPv6 connections are in the rest row.
    assert run.items("ConnectionOverflow") == [{
        "timestamp": "2026-01-01T00:00:00.000Z", "hit_count": 3, "bytes_in": 3,
        "bytes_out": 6, "scope": "rest"}]


def test_login_remote_address_is_canonical():
    run = Run()
    run.feed(kind="login", t=T0, operation="Login", pid=1, user_name="u", executable="sshd",
             remote_address="2001:DB8:0:0::1")
    run.close()
    assert run.items("Login")[0]["remote_address"] == "2001:db8::1"


def test_a_trace_address_of_neither_family_is_refused():
    run = Run()
    exc = raises(TraceError, lambda: run.feed(kind="connection", t=T0, protocol="TCP",
                                              local_address="1::2::3", local_port=1,
                                              remote_address="::1", remote_port=2))
    assert "local_address" in str(exc) and "1::2::3" in str(exc)


def test_a_window_too_big_for_one_message_is_split_not_truncated():
    run = Run(sizes=(8, 200, 8), max_size=1024)
    for port in range(150):
        conn(run, port * 0.1, 2000 + port)
    run.close()
    assert len(run.messages) > 10
    for length, _message in run.messages:
        assert length <= 1024
    ports = [i["local_port"] for i in run.items("ConnectionCreate")]
    assert ports == list(range(2000, 2150))
    ids = [e["Id"] for e in run.events("ConnectionCreate")]
    assert len(set(ids)) == len(ids)


def test_logins_pass_through_unaggregated():
    run = Run()
    for op in ("Login", "Login", "LoginFailed"):
        run.feed(kind="login", t=T0, operation=op, pid=7, user_name="root", executable="pts/0")
    run.close()
    assert [i["operation"] for i in run.items("Login")] == ["Login", "Login", "LoginFailed"]


def _error(run, line):
    try:
        run.replay.feed(line, "trace.jsonl:12")
    except TraceError as exc:
        return str(exc)
    raise AssertionError("no error for " + line)


def test_bad_lines_name_the_line_and_the_problem():
    run = Run()
    assert _error(run, "{not json\n").startswith("trace.jsonl:12: not valid JSON")
    assert "truncated" in _error(run, '{"kind": "dns", "t": 1')
    assert "lacks 'remote_port'" in _error(run, json.dumps(
        {"kind": "connection", "t": T0, "protocol": "TCP", "local_address": "1.1.1.1",
         "local_port": 1, "remote_address": "2.2.2.2"}))
    assert "'kind'" in _error(run, '{"kind": "file", "t": 1}')
    assert "'local_port'" in _error(run, json.dumps(
        {"kind": "connection", "t": T0, "protocol": "TCP", "local_address": "1.1.1.1",
         "local_port": 70000, "remote_address": "2.2.2.2", "remote_port": 1}))
    assert "'remote_address'" in _error(run, json.dumps(
        {"kind": "connection", "t": T0, "protocol": "TCP", "local_address": "1.1.1.1",
         "local_port": 7, "remote_address": "nowhere", "remote_port": 1}))
    assert "'protocol'" in _error(run, json.dumps(
        {"kind": "connection", "t": T0, "protocol": "SCTP", "local_address": "1.1.1.1",
         "local_port": 7, "remote_address": "2.2.2.2", "remote_port": 1}))


def test_out_of_order_line_is_an_error():
    run = Run()
    conn(run, 10, 1)
    message = _error(run, json.dumps({"kind": "dns", "t": T0 + 5, "hostname": "a",
                                      "address": "1.1.1.1"}))
    assert "out of time order" in message


def test_periodic_items_are_one_event_split_over_small_messages():
    run = Run(max_size=1024)
    packages = [{"name": "pkg-%d" % i, "version": "1.%d" % i, "vendor": "Vendor <v@example.org>"}
                for i in range(40)]
    sent = run.engine.send_periodic("SBoM", packages, 1767225600000)
    assert sent == len(run.messages) > 2
    assert run.items("SBoM") == packages
    event = run.events("SBoM")[0]
    assert event["Category"] == "Periodic" and event["EventType"] == "Security"
    assert run.engine.send_periodic("SBoM", [], 1767225600000) == 0
    nics = [{"type": "WIFI", "vlans": [], "vendor": "", "info": {"mac": "aa:bb:cc:dd:ee:ff",
                                                                "ipv4_address": "10.0.0.2"}}]
    run.engine.send_periodic("SystemInformation", [{"os_dist": "MicroPython", "nics": nics}],
                             1767225600000)
    assert run.items("SystemInformation")[0]["nics"] == nics


def test_continued_connection_adds_bytes_without_a_hit():
    run = Run()
    conn(run, 0, 1000, bytes_in=10, bytes_out=1)
    run.feed(kind="connection", t=T0 + 1, protocol="TCP", local_address="10.0.0.2",
             local_port=1000, remote_address="1.2.3.4", remote_port=443, bytes_in=5,
             bytes_out=5, direction="out", continued=True)
    run.feed(kind="connection", t=T0 + 61, protocol="TCP", local_address="10.0.0.2",
             local_port=1000, remote_address="1.2.3.4", remote_port=443, bytes_in=7,
             bytes_out=0, direction="out", continued=True)
    run.close()
    items = run.items("ConnectionCreate")
    assert [(i["hit_count"], i["bytes_in"], i["bytes_out"]) for i in items] == [(1, 15, 6),
                                                                                (1, 7, 0)]


def test_a_board_without_an_ipv6_cache_counts_ipv6_as_unsupported():
    from microagent.cache import DnsTable, NetworkCache, NoCache
    from microagent.engine import Engine, make_encoder
    sent = []
    warnings = []
    engine = Engine(NoCache(), NetworkCache(4), NoCache(), DnsTable(4),
                    make_encoder("json", "00000000-0000-4000-8000-000000000001",
                                 lambda buf, n: sent.append(json.loads(bytes(buf[:n]))), 4096),
                    warnings.append)
    engine.record_connection(0, 0, "2001:db8::2", 1000, "2001:db8::ab", 443, 1, 2, 2)
    engine.record_connection_packed6(0, 0, [0x2001, 0xDB8, 0, 0, 0, 0, 0, 2], 1000,
                                     [0x2001, 0xDB8, 0, 0, 0, 0, 0, 0xAB], 443, 1, 2, 2)
    engine.record_connection(0, 0, "::ffff:10.0.0.2", 1000, "1.2.3.4", 443, 1, 2, 2)
    engine.record_dns("v6.example", "2001:db8::ab")
    engine.record_dns_packed6("v6.example", [0x2001, 0xDB8, 0, 0, 0, 0, 0, 0xAB])
    engine.flush(0, 60000)
    payloads = {e["Name"]: e["Payload"] for m in sent for e in m["Events"]}
    assert [(i["local_address"], i["remote_address"]) for i in payloads["ConnectionCreate"]] == [
        ("10.0.0.2", "1.2.3.4")]
    assert payloads["DroppedEvents"][0]["unsupported"] == 2
    assert engine.dns.count == 0
    assert len(warnings) == 1 and "NetworkActivity_IPv6_CacheSize" in warnings[0]
