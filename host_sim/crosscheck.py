"""Cross-checking the firmware engine (on MicroPython) against the host engine on one trace.

Both engines must agree event for event wherever no cache overflowed; where one did, each must
show its documented policy (docs/spec.md section 4): the firmware keeps the first N distinct entries and
drops the rest, the host evicts the oldest and keeps the last N inserted. To say which
difference is allowed, the trace is also run through a plain reference model of the spec
(`host_sim.reference_model`, standard library only), and each engine's output must equal
the model's for its policy, item for item, with the exact drop and evict counts and the
ConnectionOverflow summary of what each cache lost. With the
compact encoding, each message is decoded back to JSON first, so the same comparison proves that
decoding a compact message gives exactly the JSON encoding's rows.
"""
import json
from datetime import datetime, timezone

from microagent.decode import body_of_line, decode_body
from microagent.encode import JSON

from host_sim.reference_model import (COLLECTORS, CONNECTION, CONNECTION6, DNS, FIRMWARE, HOST, LOGIN,
                                      OVERFLOW, PROCESS, expected_window, trace_windows)
from host_sim.replay import replay_firmware, replay_host


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
                slot = windows.setdefault(index, {"items": {PROCESS: [], CONNECTION: [],
                                                            LOGIN: [], OVERFLOW: []},
                                                  "losses": {}})
                if event["Name"] == "DroppedEvents":
                    slot["losses"][item["collector"]] = {
                        "dropped": item["dropped"], "evicted": item["evicted"],
                        "unsupported": item.get("unsupported", 0)}
                else:
                    slot["items"][event["Name"]].append(item)
    return windows


def _ipv4_first(collector, items):
    """ITEMS in the firmware's order: its IPv4 cache's entries before its IPv6 cache's (the
    host keeps both families in one cache, in arrival order)."""
    if collector != CONNECTION:
        return items
    return sorted(items, key=lambda i: ":" in i["local_address"] or ":" in i["remote_address"])


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
    empty = {"items": {PROCESS: [], CONNECTION: [], LOGIN: [], OVERFLOW: []}, "losses": {}}
    for index, (start, window_events) in windows.items():
        expected = {engine: expected_window(window_events, start, sizes, engine)
                    for engine in outputs}
        for engine in outputs:
            actual = got[engine].get(index, empty)
            want_items, want_losses = expected[engine]
            for c in (PROCESS, CONNECTION, LOGIN, OVERFLOW):
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
            if c == CONNECTION:  # the firmware's IPv6 cache beside its IPv4 one
                fw_lost += fw_losses.get(CONNECTION6, {}).get("dropped", 0)
            host_lost = host_losses.get(c, {}).get("evicted", 0)
            if c == DNS:
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
            elif fw_items[c] == _ipv4_first(c, host_items[c]):
                if fw_items[c]:
                    report.rows.append((index, c, "identical", "%d entries" % len(fw_items[c])))
            elif (DNS in fw_losses or DNS in host_losses) and c == CONNECTION:
                # The host's one DNS table for both families can overflow where the firmware's
                # two do not.
                report.rows.append((index, c, "policy difference",
                                    "same entries; DNS counts differ after the DNS table overflowed"))
            else:
                report.problems.append("window %d %s: engines differ without an overflow"
                                       % (index, c))
    return report
