"""IPv6 on the cloud side: the network attacks (a port sweep, a brute force then a login, a
threat list's addresses and networks, a cache flood, data egress) replayed by the host engine,
then every IPv4 address of their messages written as an IPv6 one in several spellings (upper
case, uncompressed, zero-padded, embedded dotted quad, a zone), raise the same alerts keyed by
the canonical address; IPv4-mapped spellings raise the IPv4 alerts; routine IPv6 traffic (NDP
to solicited-node groups, the link's router, DNS to the resolver) raises nothing; the console
shows one row per connection whatever its spelling.

The oracle is the IPv4 run of the same trace and the mapping below, which writes the canonical
text of each IPv6 address by construction (not with the ipaddress module the code uses)."""
import json
import re

import pytest
from hypothesis import given, settings, strategies as st
from microagent.events import canonical_address

from alert_helpers import START, evaluate, live, merged, of_rule, quiet, replay
from host_sim.cloud.alerts import addresses
from host_sim import tracegen
from host_sim.cloud.alerts.engine import AlertEngine
from host_sim.cloud.alerts.messages import format_time, read_message
from host_sim.cloud.alerts.rules import load_rules
from host_sim.cloud.alerts.sources import HubStore
from host_sim.cloud.console.model import FleetModel
from host_sim.cloud.console.server import HubSite
from host_sim.replay import replay_firmware, replay_host
from hub_emulator import store
from microagent.decode import body_of_line
from microagent.encode import COMPACT, JSON
from hub_emulator.database import open_db

T0 = START + 1800
ADDRESS_FIELDS = {"ConnectionCreate": ("local_address", "remote_address"),
                  "ConnectionOverflow": ("remote_address",), "Login": ("remote_address",)}
DOTTED = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$")


def _groups(v4):
    """The eight 16-bit groups of the IPv6 address standing for the IPv4 text V4: loopback ->
    ::1, 169.254/16 -> fe80::/64, multicast -> ff02::/16, private -> fd00::/16 (ULA), else
    2001:db8::/32; the IPv4 address in the last two groups keeps CIDRs /96 + n."""
    a, b, c, d = (int(x) for x in v4.split("."))
    hi, lo = a << 8 | b, c << 8 | d
    if v4 == "127.0.0.1":
        return [0, 0, 0, 0, 0, 0, 0, 1]
    if a == 169 and b == 254:
        head = [0xfe80, 0]
    elif 224 <= a <= 239:
        head = [0xff02, 0]
    elif a == 10 or (a == 172 and 16 <= b <= 31) or (a == 192 and b == 168):
        head = [0xfd00, 0]
    else:
        head = [0x2001, 0xdb8]
    return head + [0, 0, 0, 0, hi, lo]


def canonical6(v4):
    """The RFC 5952 text of _groups(V4), by construction: the middle zeros compressed."""
    g = _groups(v4)
    if g[:7] == [0] * 7:
        return "::1"
    return "%x%s::%x:%x" % (g[0], ":%x" % g[1] if g[1] else "", g[6], g[7])


def spellings6(v4):
    """Valid spellings of the IPv6 address standing for V4, canonical first."""
    g = _groups(v4)
    forms = [canonical6(v4), canonical6(v4).upper(), ":".join("%x" % x for x in g),
             ":".join("%04X" % x for x in g)]
    if g[0] != 0:
        forms.append(canonical6(v4).rsplit(":", 2)[0] + ":" + v4)   # embedded dotted quad
    if g[0] == 0xfe80:
        forms.append(canonical6(v4) + "%eth0")
    return forms


def spellings_mapped(v4):
    """IPv4-mapped IPv6 spellings of V4."""
    a, b, c, d = (int(x) for x in v4.split("."))
    return ["::ffff:" + v4, "::FFFF:%X:%X" % (a << 8 | b, c << 8 | d),
            "0:0:0:0:0:ffff:%04x:%04x" % (a << 8 | b, c << 8 | d)]


def respelled(bodies, spell):
    """BODIES (JSON text) with every address field's IPv4 address written as SPELL(v4)[n],
    n turning over the spellings occurrence by occurrence."""
    turn = [0]
    out = []

    def one(v4):
        forms = spell(v4)
        turn[0] += 1
        return forms[turn[0] % len(forms)]
    for body in bodies:
        message = json.loads(body)
        for event in message["Events"]:
            for item in event["Payload"]:
                for field in ADDRESS_FIELDS.get(event["Name"], ()):
                    if DOTTED.match(str(item.get(field, ""))):
                        item[field] = one(item[field])
        out.append(json.dumps(message))
    return out


def _key6(key):
    """An IPv4 run's alert key with each IPv4 address as its canonical IPv6 one."""
    return " ".join(canonical6(w) if DOTTED.match(w) else w for w in key.split(" "))


def _summary(alerts, key=lambda k: k):
    return sorted((a["rule"], key(a["key"]), a["count"]) for a in alerts)


def _connection(t, address, port, bytes_in=0, bytes_out=60, protocol="TCP", local="192.168.1.20"):
    return {"kind": "connection", "t": round(t, 3), "protocol": protocol,
            "local_address": local, "local_port": 40000 + port % 20000, "remote_address": address,
            "remote_port": port, "bytes_in": bytes_in, "bytes_out": bytes_out, "direction": "out"}


def _login(t, operation, address, user="root"):
    return {"kind": "login", "t": round(t, 3), "operation": operation, "pid": 4242,
            "user_name": user, "executable": "sshd", "remote_address": address}


def _attacks():
    """A sweep (300 hosts on port 23, 120 ports of one), a brute force then a login, and
    connections to a threat list's address and network and to an address beside them."""
    events = [_connection(T0 + i * 0.05, "10.0.%d.%d" % (i // 250, i % 250 + 1), 23)
              for i in range(300)]
    events += [_connection(T0 + 20 + i * 0.05, "10.9.9.9", 1 + i) for i in range(120)]
    events += [_login(T0 + 600 + i * 5, "LoginFailed", "203.0.113.9") for i in range(12)]
    events.append(_login(T0 + 800, "Login", "203.0.113.9", user="pi"))
    events += [_connection(T0 + 900, "198.51.100.66", 3333, 100),
               _connection(T0 + 901, "203.0.113.140", 443, 5),
               _connection(T0 + 902, "203.0.113.200", 443, 5)]
    return events


def _rules(tmp_path, name, lines):
    (tmp_path / (name + ".txt")).write_text("\n".join(lines) + "\n")
    path = tmp_path / (name + ".json")
    path.write_text(json.dumps({"rules": [{"id": "threat-list", "file": name + ".txt"}]}))
    return str(path)


def test_the_network_attacks_in_ipv6_spellings_raise_the_ipv4_alerts_by_canonical_address(
        tmp_path):
    bodies = replay(merged(quiet(hours=3.0), _attacks()), tmp_path, cache_size=1024)
    rules4 = _rules(tmp_path, "v4", ["198.51.100.66", "203.0.113.128/26"])
    # the same list in IPv6, spelled as people write it
    rules6 = _rules(tmp_path, "v6", ["2001:0DB8:0:0:0:0:C633:6442",
                                     "2001:db8::cb00:7180/122  # 203.0.113.128/26"])
    expected = evaluate(bodies, rules4)
    fired = {a["rule"] for a in expected}
    assert {"outbound-sweep", "brute-force", "successful-brute-force",
            "threat-list"} <= fired          # the IPv4 run is a real oracle
    assert {a["key"] for a in of_rule(expected, "threat-list")} == {"198.51.100.66",
                                                                   "203.0.113.140"}
    alerts6 = evaluate(respelled(bodies, spellings6), rules6)
    assert _summary(alerts6) == _summary(expected, _key6)
    sweep4, sweep6 = of_rule(expected, "outbound-sweep"), of_rule(alerts6, "outbound-sweep")
    for field in ("destinations", "addresses", "ports"):
        assert sweep6[0]["evidence"][-1][field] == sweep4[0]["evidence"][-1][field]
    assert sweep6[0]["evidence"][-1]["latest"].startswith("[fd00::a09:909]:")
    brute = of_rule(alerts6, "successful-brute-force")[0]
    assert brute["key"] == "2001:db8::cb00:7109 pi"
    # IPv4-mapped spellings are the IPv4 addresses: the IPv4 run's alerts, keys and all
    mapped = evaluate(respelled(bodies, spellings_mapped), rules4)
    assert _summary(mapped) == _summary(expected)


def test_a_threat_list_s_ipv4_mapped_entries_match_the_ipv4_address(tmp_path):
    events = [_connection(T0, "192.0.2.77", 80, 5), _connection(T0 + 1, "192.0.2.78", 80, 5),
              _connection(T0 + 2, "198.51.100.9", 80, 5)]
    bodies = replay(merged(quiet(hours=1.0), events), tmp_path)
    rules = _rules(tmp_path, "mapped", ["::ffff:192.0.2.77", "::FFFF:198.51.100.0/120"])
    assert {a["key"] for a in of_rule(evaluate(bodies, rules), "threat-list")} == {
        "192.0.2.77", "198.51.100.9"}


def test_a_cache_flood_of_ipv6_destinations_is_the_same_flood(tmp_path):
    flood = [_connection(T0 + i * 0.01, "203.0.%d.%d" % (i // 200, i % 200 + 1), 443,
                         bytes_in=100 if i < 3 else 0) for i in range(600)]
    bodies = replay(merged(quiet(hours=1.0), flood), tmp_path, cache_size=64)
    expected = of_rule(evaluate(bodies), "network-cache-flood")
    assert expected and expected[0]["evidence"][-1]["connections_lost"] > 0
    alerts6 = of_rule(evaluate(respelled(bodies, spellings6)), "network-cache-flood")
    assert _summary(alerts6) == _summary(expected)
    last4, last6 = expected[0]["evidence"][-1], alerts6[0]["evidence"][-1]
    assert last6["connections_lost"] == last4["connections_lost"]
    assert last6["destinations"] == last4["destinations"]
    assert last6["two_way"] == ["[%s]:%s" % (canonical6(pair.rsplit(":", 1)[0]),
                                             pair.rsplit(":", 1)[1]) for pair in last4["two_way"]]


def _upload(t, address, sent):
    return _connection(t, address, 443, bytes_in=2000, bytes_out=sent)


def test_egress_counts_bytes_leaving_the_link_not_to_link_local_or_loopback(tmp_path):
    base = quiet(hours=30.0)
    day2 = START + 86400 + 2 * 3600
    public = [_upload(day2 + 60 * i, "198.51.100.80", 5000000) for i in range(10)]
    on_link = [_upload(day2 + 7200 + 60 * i, "169.254.7.7", 5000000) for i in range(10)]
    local = [_upload(day2 + 2 * 7200 + 60 * i, "127.0.0.1", 5000000) for i in range(10)]
    bodies = respelled(replay(merged(base, public, on_link, local), tmp_path), spellings6)
    egress = of_rule(evaluate(bodies), "data-egress")
    # the link-local and loopback hours move as many bytes as the public one: only it counts
    assert [a["key"] for a in egress] == ["hour %d" % (int(day2 // 3600) * 3600)]
    assert egress[0]["evidence"][-1]["latest_destination"] in (
        "[2001:db8::c633:6450]:443", "[%s]:8883" % canonical6("52.166.2.10"))


def test_routine_ipv6_traffic_raises_nothing(tmp_path):
    """Two days of a device's NDP (unanswered ICMPv6 to 60 solicited-node groups within a
    minute, the router on the link) and DNS to its resolver, each address spelled differently
    from one message to the next: the new-destination rule learns each once, the sweep does
    not count groups."""
    routine = []
    for day in range(2):
        for hour in range(0, 24, 3):
            t = START + day * 86400 + hour * 3600 + 300
            routine += [_connection(t + i, "239.255.%d.%d" % (i // 200, i % 200 + 1), 0,
                                    protocol="ICMP", local="169.254.0.20") for i in range(60)]
            routine.append(_connection(t + 61, "169.254.0.1", 0, bytes_in=64, protocol="ICMP",
                                       local="169.254.0.20"))
            routine += [_connection(t + 62 + i, "192.168.1.1", 53, bytes_in=120, protocol="UDP")
                        for i in range(3)]
    base = list(quiet(hours=48.0))
    quiet_alerts = _summary(evaluate(replay(base, tmp_path, name="quiet.jsonl")))
    bodies = replay(merged(base, routine), tmp_path, cache_size=1024)
    assert _summary(evaluate(respelled(bodies, spellings6))) == quiet_alerts
    # the oracle can fail: the same traffic a day past its learning is new
    late = [dict(e, t=e["t"] + 2 * 86400) for e in routine[60:64]]    # router, resolver
    bodies = replay(merged(quiet(hours=0.1, seed=4), late), tmp_path, name="late.jsonl")
    news = of_rule(evaluate(respelled(bodies, spellings6), _learning_rules(tmp_path)),
                   "new-outbound-destination")
    assert {a["key"] for a in news} >= {"fe80::a9fe:1 0", "fd00::c0a8:101 53"}


def _learning_rules(tmp_path):
    path = tmp_path / "short-learning.json"
    path.write_text(json.dumps({"learning": {"duration_s": 1}, "rules": []}))
    return str(path)


def test_custom_allow_lists_take_ipv6_networks_and_mapped_entries(tmp_path):
    events = [_connection(T0, "10.1.2.3", 443, 5), _connection(T0 + 1, "198.51.100.7", 443, 5),
              _connection(T0 + 2, "203.0.113.9", 443, 5)]
    bodies = respelled(replay(merged(quiet(hours=1.0), events), tmp_path), spellings6)
    path = tmp_path / "custom.json"
    path.write_text(json.dumps({"rules": [{
        "id": "to", "kind": "custom", "type": "ConnectionToIpNotAllowed", "devices": ["dev*"],
        "allowed": ["FD00::/16", "2001:db8::c633:6400/120", "2001:DB8::34A6:20A",
                    "2001:db8:0:0:0:0:d8ef:2300/120", "::ffff:52.166.2.10",
                    "::ffff:216.239.35.0/120"],
        "severity": "Medium", "title": "{type}", "what_to_do": "check"}]}))
    assert {a["key"] for a in of_rule(evaluate(bodies, str(path)), "to")} == {
        "2001:db8::cb00:7109"}
    # in the IPv4 run the mapped entries allow the hub and the time server
    plain = replay(merged(quiet(hours=1.0), events), tmp_path, name="plain.jsonl")
    assert {a["key"] for a in of_rule(evaluate(plain, str(path)), "to")} == {
        "10.1.2.3", "198.51.100.7", "203.0.113.9"}


def test_the_console_shows_one_row_per_ipv6_connection_whatever_its_spelling(tmp_path):
    long_address = "2001:db8:1234:5678:9abc:def0:1234:5678"
    items = [{"timestamp": format_time(T0 + i), "local_address": local,
              "remote_address": remote, "local_port": 50000, "remote_port": 443,
              "transport_protocol": "TCP", "bytes_in": 10, "bytes_out": 20, "hit_count": 1,
              "direction": "out"}
             for i, (local, remote) in enumerate([
                 ("fd00::20", long_address),
                 ("FD00:0:0:0:0:0:0:20", long_address.upper()),
                 ("fd00:0000::0020", "2001:0db8:1234:5678:9abc:def0:1234:5678%eth0"),
                 ("::ffff:192.168.1.20", "::ffff:198.51.100.7")])]
    message = {"Events": [{"Name": "ConnectionCreate", "Category": "Triggered",
                           "TimestampUTC": format_time(T0 + 10), "Payload": items}]}
    data = tmp_path / "hub"
    db = open_db(str(data))
    store.add(db, "dev6", "devices/dev6/messages/events/", {"$.ct": "application/json"},
              json.dumps(message).encode())
    model = FleetModel(HubStore(str(data)), load_rules(None))
    model.refresh()
    rows = model.device_snapshot("dev6")["connections"]
    assert sorted((r["local"], r["remote"], r["hits"]) for r in rows) == [
        ("192.168.1.20:50000", "198.51.100.7:443", 1),
        ("[fd00::20]:50000", "[%s]:443" % long_address, 3)]
    status, body = HubSite(model).get("/device", {"id": "dev6"})
    assert status == 200
    table = body[body.index('id="connections"'):]
    table = table[:table.index("</table>")]
    assert table.count("<tr>") == 3 and "[%s]:443" % long_address in table
    assert "td{overflow-wrap:anywhere}" in body    # a long address wraps inside its cell


def test_the_ipv6_cache_s_losses_name_its_config_key():
    message = {"Events": [{"Name": "DroppedEvents", "Category": "Periodic",
                           "TimestampUTC": format_time(T0), "Payload": [
                               {"timestamp": format_time(T0), "collector": "ConnectionCreateIPv6",
                                "cache_size": 64, "dropped": 9, "evicted": 0}]}]}
    dropped = of_rule(evaluate([json.dumps(message)]), "dropped-events")
    assert [a["key"] for a in dropped] == ["ConnectionCreateIPv6"]
    assert "NetworkActivity_IPv6_CacheSize" in dropped[0]["title"] + dropped[0]["what_to_do"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.integers(0, 0xFFFF), min_size=8, max_size=8), st.randoms())
def test_the_cloud_reads_every_spelling_as_the_agent_does(groups, rng):
    """The cloud's canonical text (ipaddress) and the agent's (microagent.events, no ipaddress)
    agree on random addresses in random spellings, IPv4-mapped ones and zones included."""
    if rng.random() < 0.2:
        groups[:6] = [0, 0, 0, 0, 0, 0xFFFF]
    if rng.random() < 0.3:
        groups[2:6] = [0, 0, 0, 0]
    text = ":".join(("%0" + str(rng.randint(1, 4)) + "x") % g for g in groups)
    if rng.random() < 0.5:
        text = text.upper()
    if rng.random() < 0.2:
        text += rng.choice(("%eth0", "%", "%1"))
    assert addresses.canonical(text) == canonical_address(text)


def _trace_respelled(events):
    """EVENTS with every IPv4 address of a connection or login written as an IPv6 spelling,
    turning over the spellings as respelled() does."""
    turn = [0]
    out = []
    for event in events:
        event = dict(event)
        for field in ("local_address", "remote_address"):
            if DOTTED.match(str(event.get(field, ""))):
                forms = spellings6(event[field])
                turn[0] += 1
                event[field] = forms[turn[0] % len(forms)]
        out.append(event)
    return out


def _engine_bodies(engine, encoding, trace):
    lines = []
    if engine == "host":
        replay_host(str(trace), 60000, 1024, lines.append, lambda line: None, encoding=encoding)
    else:
        assert replay_firmware(str(trace), 60000, 1024, lines.append, lambda line: None,
                               runtime="micropython", heap="4M", encoding=encoding) == 0
    return [body_of_line(line if isinstance(line, str) else line.decode()) for line in lines]


def _alerts_of(bodies, rules_path):
    engine = AlertEngine(load_rules(rules_path))
    for body in bodies:
        message = read_message(body, {})
        engine.feed("dev1", {}, message, live(message))
    engine.check_silence()
    return [a.as_dict() for a in engine.sorted_alerts()]


@pytest.mark.parametrize("engine,encoding", [("host", JSON), ("host", COMPACT),
                                             ("firmware", JSON), ("firmware", COMPACT)])
def test_an_ipv6_trace_through_each_engine_raises_the_ipv4_trace_s_alerts(engine, encoding,
                                                                          tmp_path):
    """The attacks as the device saw them in IPv6, spelled every way, through the engines
    (which make them canonical and carry them as text or 16-byte strings) to the rules."""
    events = merged(quiet(hours=1.0), _attacks())
    trace4, trace6 = tmp_path / "v4.jsonl", tmp_path / "v6.jsonl"
    tracegen.write(events, str(trace4))
    tracegen.write(_trace_respelled(events), str(trace6))
    rules4 = _rules(tmp_path, "v4", ["198.51.100.66", "203.0.113.128/26"])
    rules6 = _rules(tmp_path, "v6", ["2001:db8::c633:6442", "2001:DB8::CB00:7180/122"])
    expected = _alerts_of(_engine_bodies(engine, encoding, trace4), rules4)
    assert {"outbound-sweep", "successful-brute-force", "threat-list"} <= {
        a["rule"] for a in expected}
    alerts6 = _alerts_of(_engine_bodies(engine, encoding, trace6), rules6)
    assert _summary(alerts6) == _summary(expected, _key6)
