# Flood-and-attack windows as trace events (dicts), and the oracle read off those same events:
# what each attack destination sent and received. Shared by the MicroPython-compatible tests
# (mp_test_overflow), the host engine's (tests/host/test_flood.py) and the end-to-end ones;
# MicroPython-compatible.
import json

T0 = 1767225600  # 2026-01-01T00:00:00Z
DEVICE = "192.168.1.20"
SHELL = ("203.0.113.9", 4444, "TCP")
POOL = ("198.51.100.66", 3333, "TCP")
SCANNED = "198.51.100.200"
ORDERS = ("before", "during", "after")
FLOODS = ("sweep", "portscan")


def connection(t, remote, port, local_port, bytes_in, bytes_out, protocol="TCP",
               continued=False):
    event = {"kind": "connection", "t": t, "protocol": protocol, "local_address": DEVICE,
             "local_port": local_port, "remote_address": remote, "remote_port": port,
             "bytes_in": bytes_in, "bytes_out": bytes_out, "direction": "out"}
    if continued:
        event["continued"] = True
    return event


def flood(start, count, kind):
    """COUNT distinct connections from START, 10 ms apart, no bytes (refused or unanswered):
    a sweep of COUNT hosts on port 80, or a port scan of one host."""
    out = []
    for i in range(count):
        t = round(start + i * 0.01, 3)
        if kind == "sweep":
            out.append(connection(t, "198.18.%d.%d" % (i >> 8, i & 255), 80, 20000 + i % 20000,
                                  0, 0))
        else:
            out.append(connection(t, SCANNED, 1 + i, 30000, 0, 0))
    return out


def attack(start):
    """A reverse shell (one connection, bytes both ways, then more bytes of it) and a miner
    (50 connections to one pool, each from its own local port, bytes both ways)."""
    out = [connection(start, SHELL[0], SHELL[1], 45000, 5000, 300),
           connection(round(start + 0.5, 3), SHELL[0], SHELL[1], 45000, 700, 90,
                      continued=True)]
    for i in range(50):
        out.append(connection(round(start + 1 + i * 0.02, 3), POOL[0], POOL[1], 46000 + i,
                              400 + i, 1200))
    return out


def window(cache_size, order, kind="sweep", start=T0):
    """One 600 s window's events: a flood of 10x CACHE_SIZE distinct connections BEFORE, DURING
    (half before, half after) or AFTER the attack."""
    count = 10 * cache_size
    span = count * 0.01
    if order == "before":
        events = flood(start, count, kind) + attack(start + span + 1)
    elif order == "after":
        events = attack(start) + flood(start + 5, count, kind)
    else:
        half = count // 2
        first = flood(start, half, kind)
        # the second half continues the first's numbering: every flood connection is distinct
        second = flood(start + 5 + span, count, kind)[half:]
        events = first + attack(start + 1 + half * 0.01) + second
    return events


def totals(events, key):
    """[hits, bytes_in, bytes_out] of connection events to KEY (address, port, protocol)."""
    found = [0, 0, 0]
    for e in events:
        if (e["kind"] == "connection"
                and (e["remote_address"], e["remote_port"], e["protocol"]) == key):
            found[0] += 0 if e.get("continued") else 1
            found[1] += e["bytes_in"]
            found[2] += e["bytes_out"]
    return found


def lines(events):
    return "".join(json.dumps(e) + "\n" for e in events)


def reported(messages, key):
    """[hits, bytes_in, bytes_out] reported for KEY by MESSAGES (parsed JSON messages):
    ConnectionCreate items plus the ConnectionOverflow row naming it with its port; and the
    scopes of the overflow rows that name its address."""
    found = [0, 0, 0]
    scopes = []
    for message in messages:
        for event in message["Events"]:
            for item in event["Payload"]:
                if event["Name"] == "ConnectionCreate":
                    named = (item["remote_address"], item["remote_port"],
                             item["transport_protocol"]) == key
                elif event["Name"] == "ConnectionOverflow":
                    if item.get("remote_address") == key[0]:
                        scopes.append(item["scope"])
                    named = (item.get("remote_address"), item.get("remote_port"),
                             item.get("transport_protocol")) == key
                else:
                    continue
                if named:
                    found[0] += item["hit_count"]
                    found[1] += item["bytes_in"]
                    found[2] += item["bytes_out"]
    return found, scopes


def overflow_items(messages):
    return [item for message in messages for event in message["Events"]
            if event["Name"] == "ConnectionOverflow" for item in event["Payload"]]


def summary_only_messages(messages):
    """Messages that hold nothing but the summary: what it cost beyond the window's others."""
    return len([m for m in messages
                if all(e["Name"] == "ConnectionOverflow" for e in m["Events"])])
