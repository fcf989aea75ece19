"""Property tests: generated traces through both engines (firmware on real MicroPython).

The cross-check must hold, and the output alone must satisfy the conservation invariants:
for each window and collector, kept + dropped (firmware) or kept + evicted (host) accounts for
every distinct key seen, and hit counts and byte sums are conserved for every kept entry.
"""
import ipaddress
import json
from collections import defaultdict

from hypothesis import HealthCheck, given, settings, strategies as st

from host_sim import crosscheck as cc, tracegen
from host_sim.replay import replay_firmware, replay_host

T0 = 1767225600.0
WINDOW_MS = 60000


@st.composite
def traces(draw):
    """Event lists with key collisions, bursts at window boundaries, both address families in
    many spellings (IPv4-mapped too, A and AAAA answers) and long strings."""
    pool = draw(st.sampled_from((1, 2, 5, 20, 80, 400)))
    count = draw(st.integers(0, 600))
    t = 0
    out = []
    for _ in range(count):
        step = draw(st.sampled_from((0, 0, 1, 7, 7, 50, 250, 59999, "edge")))
        if step == "edge":  # land exactly on, or 1 ms before, the next window boundary
            boundary = (t // WINDOW_MS + 1) * WINDOW_MS
            t = boundary - draw(st.sampled_from((0, 1)))
        else:
            t += step
        k = draw(st.integers(0, pool - 1))
        kind = draw(st.sampled_from(("connection", "connection", "process", "dns", "login")))
        stamp = T0 + t / 1000.0
        if kind == "connection":
            local = "10.0.%d.1" % (k % 4)
            remote = "192.0.%d.%d" % (k % 5, k % 9)
            family = draw(st.sampled_from(("4", "4", "4", "6", "6", "mapped")))
            if family == "6":  # a few IPv6 peers, each written in many ways
                spelling = draw(st.randoms(use_true_random=False))
                local = tracegen.spelled([0xFE80, 0, 0, 0, 0, 0, 0, k % 4 + 1], spelling)
                remote = tracegen.spelled([0x2001, 0xDB8, k % 5, 0, 0, 0, 0, k % 9], spelling)
            elif family == "mapped":  # an IPv4 peer seen through a dual-stack socket
                remote = "::ffff:" + remote
            out.append({"kind": "connection", "t": stamp, "protocol": ("TCP", "UDP", "ICMP")[k % 3],
                        "local_address": local, "local_port": k % 97,
                        "remote_address": remote,
                        "remote_port": (443, 8883, 53, 4242)[k % 4],
                        "bytes_in": draw(st.integers(0, 1 << 20)),
                        "bytes_out": draw(st.integers(0, 1 << 20)),
                        "direction": ("in", "out")[k % 2]})
        elif kind == "process":
            long_line = draw(st.integers(0, 40)) == 0
            out.append({"kind": "process", "t": stamp, "type": ("fork", "exec")[k % 2],
                        "pid": draw(st.integers(1, 1 << 22)), "ppid": k, "uid": k % 3,
                        "commandline": ("x" * 3000 + str(k)) if long_line else "cmd %d" % k})
        elif kind == "dns":
            address = "192.0.%d.%d" % (k % 5, k % 9)
            if draw(st.booleans()):  # an AAAA answer
                address = tracegen.spelled([0x2001, 0xDB8, k % 5, 0, 0, 0, 0, k % 9],
                                           draw(st.randoms(use_true_random=False)))
            out.append({"kind": "dns", "t": stamp, "hostname": "h%d.example" % (k % 11),
                        "address": address})
        else:
            out.append({"kind": "login", "t": stamp, "operation": ("Login", "Logout",
                                                                   "LoginFailed")[k % 3],
                        "pid": k, "user_name": "u%d" % (k % 5), "executable": "pts/%d" % (k % 2)})
    return out


def _write(tmp_path_factory, events):
    path = tmp_path_factory.mktemp("trace") / "t.jsonl"
    with open(path, "w") as f:
        for e in events:
            f.write(json.dumps(e) + "\n")
    return str(path)


def _canonical(address):
    # The oracle's own reading of an address (ipaddress), not the engines'.
    parsed = ipaddress.ip_address(address)
    if parsed.version == 6 and parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    return str(parsed)


def _key(kind, e):
    if kind == "process":
        from microagent.events import cap_string
        return (cap_string(e["commandline"]), e["uid"])
    return (e["local_port"], e["remote_port"], e["protocol"], _canonical(e["local_address"]),
            _canonical(e["remote_address"]))


def _family(kind, key):
    """The firmware's cache of KEY: ConnectionCreateIPv6 when an address is IPv6."""
    if kind == "connection" and (":" in key[3] or ":" in key[4]):
        return "ConnectionCreateIPv6"
    return "ConnectionCreate" if kind == "connection" else "ProcessCreate"


def _item_key(name, item):
    if name == "ProcessCreate":
        return (item["commandline"], item["user_id"])
    return (item["local_port"], item["remote_port"], item["transport_protocol"],
            item["local_address"], item["remote_address"])


def check_invariants(events, messages, policy, cache_size):
    if not events:
        assert messages == []
        return
    start = int(round(events[0]["t"] * 1000))
    seen = defaultdict(lambda: defaultdict(list))  # window -> kind -> events
    for e in events:
        seen[(int(round(e["t"] * 1000)) - start) // WINDOW_MS][e["kind"]].append(e)
    got = cc.group_output(messages, start, WINDOW_MS)
    for window, kinds in seen.items():
        out = got.get(window, {"items": {"ProcessCreate": [], "ConnectionCreate": [],
                                         "Login": []}, "losses": {}})
        # The firmware's caches: process, IPv4 and IPv6 connections; the host's: process and
        # connections of both families.
        caches = [("process", "ProcessCreate", "ProcessCreate")]
        if policy == cc.FIRMWARE:
            caches += [("connection", "ConnectionCreate", "ConnectionCreate"),
                       ("connection", "ConnectionCreate", "ConnectionCreateIPv6")]
        else:
            caches += [("connection", "ConnectionCreate", None)]
        for kind, name, cache in caches:
            raw = [e for e in kinds.get(kind, [])
                   if cache is None or _family(kind, _key(kind, e)) == cache]
            items = [i for i in out["items"][name]
                     if cache is None or _family(kind, _item_key(name, i)) == cache]
            losses = out["losses"].get(cache or name, {"dropped": 0, "evicted": 0})
            kept = [_item_key(name, i) for i in items]
            assert len(kept) == len(set(kept)), "an entry appears twice in window %d" % window
            assert len(kept) <= cache_size
            distinct = set(_key(kind, e) for e in raw)
            assert set(kept) <= distinct
            by_key = defaultdict(list)
            for e in raw:
                by_key[_key(kind, e)].append(e)
            if policy == cc.FIRMWARE:
                assert losses["evicted"] == 0
                assert sum(i["hit_count"] for i in items) + losses["dropped"] == len(raw)
                assert len(distinct) - len(kept) <= losses["dropped"]
                for item in items:
                    mine = by_key[_item_key(name, item)]
                    assert item["hit_count"] == len(mine)
                    if kind == "connection":
                        assert item["bytes_in"] == min(sum(e["bytes_in"] for e in mine), 2**32 - 1)
                        assert item["bytes_out"] == min(sum(e["bytes_out"] for e in mine), 2**32 - 1)
            else:
                assert losses["dropped"] == 0
                assert len(distinct) - len(kept) <= losses["evicted"]
                assert sum(i["hit_count"] for i in items) <= len(raw)
                for item in items:
                    mine = by_key[_item_key(name, item)]
                    # a kept host entry holds its key's events since it was last inserted
                    last = mine[len(mine) - item["hit_count"]:]
                    assert item["hit_count"] <= len(mine)
                    if losses["evicted"] == 0:
                        assert item["hit_count"] == len(mine)
                    if kind == "connection":
                        assert item["bytes_in"] == sum(e["bytes_in"] for e in last)
                        assert item["bytes_out"] == sum(e["bytes_out"] for e in last)
        logins = out["items"]["Login"]
        login_losses = out["losses"].get("Login", {"dropped": 0, "evicted": 0})
        assert len(logins) + login_losses["dropped"] + login_losses["evicted"] == len(
            kinds.get("login", []))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.data_too_large])
@given(events=traces(), cache_size=st.integers(1, 300))
def test_crosscheck_and_invariants_hold(tmp_path_factory, events, cache_size):
    path = _write(tmp_path_factory, events)
    report = cc.crosscheck(path, WINDOW_MS, cache_size, heap="2M")
    assert report.ok, "\n".join(report.problems)
    for policy, run in ((cc.FIRMWARE, replay_firmware), (cc.HOST, replay_host)):
        messages = []
        if policy == cc.FIRMWARE:
            run(path, WINDOW_MS, cache_size, messages.append, lambda w: None, runtime="cpython")
        else:
            run(path, WINDOW_MS, cache_size, messages.append, lambda w: None)
        check_invariants(events, messages, policy, cache_size)
