"""Cross-checking the firmware engine (on MicroPython) against the host engine on one trace.

Both engines must agree event for event wherever no cache overflowed; where one did, each must
show its documented policy (spec section 4): the firmware keeps the first N distinct entries and
drops the rest, the host evicts the oldest and keeps the last N inserted. To say which
difference is allowed, the trace is also run through a plain reference model of the spec
(`expected_window`), written for clarity rather than speed, and each engine's output must equal
the model's for its policy, item for item, with the exact drop and evict counts. With the
compact encoding, each message is decoded back to JSON first, so the same comparison proves that
decoding a compact message gives exactly the JSON encoding's rows.
"""
import json
from collections import OrderedDict
from datetime import datetime, timezone

from microagent import events as ev
from microagent.decode import body_of_line, decode_body
from microagent.encode import JSON
from microagent.encode import iso8601
from microagent.trace import parse_line, time_ms

from host_sim.replay import replay_firmware, replay_host

COLLECTORS = (ev.PROCESS, ev.CONNECTION, ev.LOGIN, ev.DNS)
FIRMWARE = "firmware"
HOST = "host"


class _Model:
    """One collector's cache under one policy, over one window (the spec, literally)."""

    def __init__(self, capacity, policy):
        self.capacity = capacity
        self.policy = policy
        self.entries = OrderedDict()
        self.dropped = 0
        self.evicted = 0
        self._serial = 0

    def add(self, key, event, merge):
        if key is None:  # logins: every event its own entry
            self._serial += 1
            key = self._serial
        if key in self.entries:
            merge(self.entries[key], event)
            return
        if len(self.entries) >= self.capacity:
            if self.policy == FIRMWARE:
                self.dropped += 1
                return
            self.entries.popitem(last=False)
            self.evicted += 1
        self.entries[key] = dict(event, hits=1)


def _merge_hit(entry, event):
    entry["hits"] += 0 if event.get("continued") else 1
    entry["bytes_in"] = entry.get("bytes_in", 0) + event.get("bytes_in", 0)
    entry["bytes_out"] = entry.get("bytes_out", 0) + event.get("bytes_out", 0)


def _merge_dns(entry, event):
    entry["hits"] += 1
    entry["hostname"] = event["hostname"]


def expected_window(window_events, window_start, sizes, policy):
    """The items and loss counts a window must produce under POLICY, per collector."""
    models = {c: _Model(sizes[c], policy) for c in COLLECTORS}
    unsupported = 0
    for t, e in window_events:
        e = dict(e, offset=t - window_start)
        kind = e["kind"]
        if kind == "process":
            e["commandline"] = ev.cap_string(e["commandline"])
            models[ev.PROCESS].add((e["commandline"], e["uid"]), e, _merge_hit)
        elif kind == "connection":
            if ev.is_ipv6(e["local_address"]) or ev.is_ipv6(e["remote_address"]):
                unsupported += 1
                continue
            models[ev.CONNECTION].add((e["local_port"], e["remote_port"], e["protocol"],
                                       e["local_address"], e["remote_address"]), e, _merge_hit)
        elif kind == "dns":
            if not ev.is_ipv6(e["address"]):
                models[ev.DNS].add(e["address"], e, _merge_dns)
        else:
            models[ev.LOGIN].add(None, e, _merge_hit)
    dns = models[ev.DNS].entries
    # The firmware's 32-bit counters saturate; the host's Python ints do not.
    saturate = (lambda n: min(n, 0xFFFFFFFF)) if policy == FIRMWARE else (lambda n: n)
    items = {ev.PROCESS: [], ev.CONNECTION: [], ev.LOGIN: []}
    for e in models[ev.PROCESS].entries.values():
        item = {"timestamp": iso8601(window_start + e["offset"]), "process_id": e["pid"],
                "parent_process_id": e["ppid"], "user_id": e["uid"],
                "commandline": e["commandline"], "type": e["type"], "hit_count": e["hits"]}
        for optional in ("executable", "user_name"):
            if e.get(optional) is not None:
                item[optional] = ev.cap_string(e[optional])
        items[ev.PROCESS].append(item)
    for e in models[ev.CONNECTION].entries.values():
        direction = e.get("direction")
        code = ev.DIRECTIONS.index(direction) if direction else 0
        resolved = dns.get(e["remote_address"])
        item = {"timestamp": iso8601(window_start + e["offset"]),
                "local_address": e["local_address"], "remote_address": e["remote_address"],
                "local_port": e["local_port"], "remote_port": e["remote_port"],
                "transport_protocol": e["protocol"],
                "application_protocol": ev.application_protocol(e["local_port"],
                                                                e["remote_port"], code),
                "bytes_in": saturate(e.get("bytes_in", 0)),
                "bytes_out": saturate(e.get("bytes_out", 0)),
                "hit_count": e["hits"], "dns_hit_count": resolved["hits"] if resolved else 0,
                "extended_properties": {"host_name": resolved["hostname"]} if resolved else {}}
        if direction:
            item["direction"] = direction
        items[ev.CONNECTION].append(item)
    for e in models[ev.LOGIN].entries.values():
        item = {"timestamp": iso8601(window_start + e["offset"]), "operation": e["operation"],
                "process_id": e["pid"], "user_name": ev.cap_string(e["user_name"]),
                "executable": ev.cap_string(e["executable"])}
        if e.get("remote_address") is not None:
            item["remote_address"] = e["remote_address"]
        items[ev.LOGIN].append(item)
    losses = {}
    for c in COLLECTORS:
        extra = unsupported if c == ev.CONNECTION else 0
        if models[c].dropped or models[c].evicted or extra:
            losses[c] = {"dropped": models[c].dropped, "evicted": models[c].evicted,
                         "unsupported": extra}
    return items, losses


def trace_windows(path, window_ms):
    """{window index: (window start ms, [(t ms, event)])} for a trace, per spec section 2."""
    windows = OrderedDict()
    t0 = None
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            event = parse_line(line, "%s:%d" % (path, number))
            t = time_ms(event)
            if t0 is None:
                t0 = t
            index = (t - t0) // window_ms
            windows.setdefault(index, (t0 + index * window_ms, []))[1].append((t, event))
    return windows


def _ms(stamp):
    parsed = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    return int(parsed.timestamp() * 1000 + 0.5)


def group_output(messages, t0, window_ms):
    """Items per window and collector, and DroppedEvents per window, from engine messages (lines
    as replay writes them: JSON, or base64 of a compact message)."""
    windows = {}
    for text in messages:
        message = decode_body(body_of_line(text))
        for event in message["Events"]:
            for item in event["Payload"]:
                index = (_ms(item["timestamp"]) - t0) // window_ms
                slot = windows.setdefault(index, {"items": {ev.PROCESS: [], ev.CONNECTION: [],
                                                            ev.LOGIN: []}, "losses": {}})
                if event["Name"] == "DroppedEvents":
                    slot["losses"][item["collector"]] = {
                        "dropped": item["dropped"], "evicted": item["evicted"],
                        "unsupported": item.get("unsupported", 0)}
                else:
                    slot["items"][event["Name"]].append(item)
    return windows


class Report:
    def __init__(self):
        self.rows = []      # (window, collector, verdict, detail)
        self.problems = []  # readable diffs

    @property
    def ok(self):
        return not self.problems


def _diff(label, got, want):
    lines = ["%s: %d items, expected %d" % (label, len(got), len(want))]
    for i in range(max(len(got), len(want))):
        g = got[i] if i < len(got) else None
        w = want[i] if i < len(want) else None
        if g != w:
            lines.append("  item %d:" % i)
            lines.append("    got      %s" % json.dumps(g, sort_keys=True))
            lines.append("    expected %s" % json.dumps(w, sort_keys=True))
            if len(lines) > 12:
                lines.append("  ...")
                break
    return "\n".join(lines)


def crosscheck(trace, window_ms, cache_size, heap="1M", runtime="micropython", progress=None,
               encoding=JSON):
    """Runs TRACE through both engines (messages in ENCODING) and the reference model;
    returns a Report."""
    outputs = {FIRMWARE: [], HOST: []}
    warnings = {FIRMWARE: [], HOST: []}
    replay_firmware(trace, window_ms, cache_size, outputs[FIRMWARE].append,
                    warnings[FIRMWARE].append, runtime=runtime, heap=heap, encoding=encoding)
    if progress:
        progress("firmware engine done: %d messages" % len(outputs[FIRMWARE]))
    replay_host(trace, window_ms, cache_size, outputs[HOST].append, warnings[HOST].append,
                encoding=encoding)
    if progress:
        progress("host engine done: %d messages" % len(outputs[HOST]))
    windows = trace_windows(trace, window_ms)
    report = Report()
    if not windows:
        return report
    t0 = next(iter(windows.values()))[0]
    got = {engine: group_output(outputs[engine], t0, window_ms) for engine in outputs}
    sizes = dict.fromkeys(COLLECTORS, cache_size)
    empty = {"items": {ev.PROCESS: [], ev.CONNECTION: [], ev.LOGIN: []}, "losses": {}}
    for index, (start, window_events) in windows.items():
        expected = {engine: expected_window(window_events, start, sizes, engine)
                    for engine in outputs}
        for engine in outputs:
            actual = got[engine].get(index, empty)
            want_items, want_losses = expected[engine]
            for c in (ev.PROCESS, ev.CONNECTION, ev.LOGIN):
                if actual["items"][c] != want_items[c]:
                    report.problems.append(_diff("window %d %s %s" % (index, engine, c),
                                                 actual["items"][c], want_items[c]))
            if actual["losses"] != want_losses:
                report.problems.append("window %d %s losses: got %s, expected %s" % (
                    index, engine, json.dumps(actual["losses"], sort_keys=True),
                    json.dumps(want_losses, sort_keys=True)))
        fw_items, fw_losses = expected[FIRMWARE]
        host_items, host_losses = expected[HOST]
        for c in COLLECTORS:
            fw_lost = fw_losses.get(c, {}).get("dropped", 0)
            host_lost = host_losses.get(c, {}).get("evicted", 0)
            if c == ev.DNS:
                if fw_lost or host_lost:
                    report.rows.append((index, c, "policy difference",
                                        "firmware dropped %d events, host evicted %d entries"
                                        % (fw_lost, host_lost)))
                continue
            if fw_lost or host_lost:
                report.rows.append((index, c, "policy difference",
                                    "firmware kept the first %d and dropped %d events; host kept "
                                    "the last %d and evicted %d entries"
                                    % (len(fw_items[c]), fw_lost, len(host_items[c]), host_lost)))
            elif fw_items[c] == host_items[c]:
                if fw_items[c]:
                    report.rows.append((index, c, "identical", "%d entries" % len(fw_items[c])))
            elif ev.DNS in fw_losses and c == ev.CONNECTION:
                report.rows.append((index, c, "policy difference",
                                    "same entries; DNS counts differ after the DNS table overflowed"))
            else:
                report.problems.append("window %d %s: engines differ without an overflow"
                                       % (index, c))
    return report
