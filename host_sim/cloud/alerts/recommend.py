"""Recommendations: what to change on a device or in the hub, computed from state rather than
per message (at the end of a batch, and on each silence check while following), so computing
them again gives the same ones (same device, id and key) with their latest figures.

From each device's messages (kept, bounded, in its engine state under "recommend", so the
cloud store carries it across restarts): the services it listens on (inbound connections'
local ports), its latest OS Baseline report's failures, and the sizes of its messages over its
last 24 h. From the hub (HubStore.hub_facts): devices sharing one primary key, and the agent
settings a device reports in its twin.
"""
from microagent.config import (COLLECTORS, FREQUENCIES, MESSAGE_TIMEOUT, PRIORITY_INTERVALS,
                               parse_intervals)

from host_sim.cloud.alerts.messages import format_time, parse_time

HOUR = 3600
DAY_HOURS = 24
SMALL_BYTES = 1024        # "well under" IoT Hub's 4 KB billing block
SMALL_SHARE = 0.10        # Defender: at least 10 % of the messages over 24 h
MIN_MESSAGES = 10         # fewer in 24 h say nothing about a habit
MAX_PORTS = 64            # listening services kept per device (the rest are counted)
MAX_CHECKS = 500          # failed checks kept of one Baseline report
TOP_CHECKS = 5
SEVERITY_RANK = {"Critical": 0, "High": 1, "Medium": 2, "Low": 3}


class Recommendation:
    """One recommendation; the shape of an Alert's dict with "kind": "recommendation"."""

    __slots__ = ("device", "rule", "key", "severity", "title", "what_to_do", "first", "last",
                 "count", "evidence")

    def __init__(self, device, rule, key, severity, title, what_to_do, evidence, first=None,
                 last=None, count=1):
        self.device, self.rule, self.key, self.severity = device, rule, key, severity
        self.title, self.what_to_do, self.evidence = title, what_to_do, evidence
        self.first, self.last, self.count = first, last, count

    def as_dict(self):
        return {"kind": "recommendation", "device": self.device, "rule": self.rule,
                "severity": self.severity, "key": self.key, "title": self.title,
                "first": format_time(self.first) if self.first is not None else None,
                "last": format_time(self.last) if self.last is not None else None,
                "count": self.count, "evidence": self.evidence, "what_to_do": self.what_to_do}


# ---- what a device's messages leave behind -------------------------------------------------------

def observe(state, message, size, t):
    """Keeps what the recommendations need of MESSAGE (SIZE bytes, device time T) in STATE (the
    engine's _Device of its device)."""
    data = state.detect.get("recommend")
    if data is None:
        data = state.detect["recommend"] = {"ports": {}, "ports_more": 0, "sizes": {},
                                            "baseline": None}
    sizes = data["sizes"]
    row = sizes.setdefault(str(int(t // HOUR) * HOUR), [0, 0])
    row[0] += 1
    if size < SMALL_BYTES:
        row[1] += 1
    if len(sizes) > DAY_HOURS + 1:
        for hour in sorted(sizes, key=int)[:len(sizes) - DAY_HOURS - 1]:
            del sizes[hour]
    for event in message["Events"]:
        name = event["Name"]
        if name == "ConnectionCreate":
            _ports(data, event["Payload"], t)
        elif name == "Baseline":
            _baseline(data, event)


def _ports(data, payload, t):
    ports = data["ports"]
    for item in payload:
        port = item.get("local_port")
        if item.get("direction") != "in" or type(port) is not int or not 0 < port < 65536:
            continue
        key = "%s/%d" % (str(item.get("transport_protocol") or "?")[:8].lower(), port)
        seen = ports.get(key)
        if seen is None:
            if len(ports) >= MAX_PORTS:
                data["ports_more"] += 1
                continue
            seen = ports[key] = [0, t, t]
        seen[0] += 1
        seen[1], seen[2] = min(seen[1], t), max(seen[2], t)


def _baseline(data, event):
    """The latest report: a report split over messages shares its event time."""
    stamp = event.get("TimestampUTC")
    t = parse_time(stamp)
    if t is None:
        return
    report = data["baseline"]
    if report is None or t > report["time"]:
        report = data["baseline"] = {"time": t, "failed": {}, "more": 0}
    elif t < report["time"]:
        return
    for item in event["Payload"]:
        check = str(item.get("check_id", "?"))[:200]
        if check in report["failed"]:
            continue
        if len(report["failed"]) >= MAX_CHECKS:
            report["more"] += 1
            continue
        report["failed"][check] = {
            "check_id": check, "severity": str(item.get("severity") or "?")[:20],
            "result": str(item.get("check_result") or "?")[:20],
            "description": str(item.get("description") or "")[:300],
            "remediation": str(item.get("remediation") or "")[:300]}


# ---- computing them ------------------------------------------------------------------------------

def compute(engine, facts=None):
    """Every recommendation over ENGINE's devices and the hub's FACTS (HubStore.hub_facts()),
    by device then id."""
    found = []
    for device, state in engine.devices.items():
        found += for_device(device, state)
    facts = facts or {}
    for group in facts.get("shared_keys", []):
        for device in group:
            others = [d for d in group if d != device]
            found.append(Recommendation(
                device, "shared-credentials", "primary key", "High",
                "%s has the same primary key as %d other device(s): %s" % (
                    device, len(others), ", ".join(others[:10])),
                "Give each device its own key (az iot hub device-identity renew-key, or remove "
                "and add it again): one leaked device would otherwise let an attacker pose as "
                "all of them, and the hub cannot tell them apart.",
                [{"devices": group}]))
    for device, reported in sorted(facts.get("reported", {}).items()):
        found += _settings(device, reported)
    return sorted(found, key=lambda r: (r.device, r.rule, r.key))


def for_device(device, state):
    """The recommendations of one device's own messages (its engine state, _Device)."""
    data = state.detect.get("recommend")
    if data is None:
        return []
    return _open_ports(device, data) + _baseline_failed(device, data) + _unutilized(device, data)


def _open_ports(device, data):
    ports = data["ports"]
    if not ports:
        return []
    ordered = sorted(ports.items(), key=lambda kv: (-kv[1][0], kv[0]))
    listed = ", ".join(key for key, _ in ordered)
    more = data["ports_more"]
    return [Recommendation(
        device, "open-ports", "listening services", "Medium",
        "%d listening service(s) seen from inbound connections: %s%s" % (
            len(ports), listed, " (and %d more connections to other ports)" % more if more else ""),
        "Close what the device does not need to offer (systemctl disable --now the service, or "
        "bind it to localhost) and firewall the rest to the addresses that use it.",
        [{"port": key, "connections": n, "first": format_time(first), "last": format_time(last)}
         for key, (n, first, last) in ordered],
        first=min(v[1] for v in ports.values()), last=max(v[2] for v in ports.values()),
        count=sum(v[0] for v in ports.values()))]


def _baseline_failed(device, data):
    report = data["baseline"]
    if not report or not report["failed"]:
        return []
    checks = sorted(report["failed"].values(),
                    key=lambda c: (SEVERITY_RANK.get(c["severity"], 9), c["check_id"]))
    counts = {}
    for check in checks:
        counts[check["severity"]] = counts.get(check["severity"], 0) + 1
    summary = ", ".join("%d %s" % (n, s) for s, n in sorted(
        counts.items(), key=lambda kv: SEVERITY_RANK.get(kv[0], 9)))
    total = len(checks) + report["more"]
    worst = checks[0]["severity"]
    return [Recommendation(
        device, "os-baseline-failed", "baseline", worst if worst in ("High", "Medium", "Low")
        else "Medium",
        "%d OS baseline check(s) failed in the report of %s (%s); first: %s" % (
            total, format_time(report["time"]), summary, ", ".join(
                c["check_id"] for c in checks[:TOP_CHECKS])),
        "Apply each failed check's remediation, starting with the most severe (the evidence "
        "lists the top %d); checks that do not apply to this device can be turned off with "
        "Baseline_ChecksDisabled." % TOP_CHECKS,
        [{"counts": counts, "more": report["more"]}] + checks[:TOP_CHECKS],
        first=report["time"], last=report["time"], count=total)]


def _unutilized(device, data):
    hours = sorted(int(h) for h in data["sizes"])
    if not hours:
        return []
    since = hours[-1] - (DAY_HOURS - 1) * HOUR
    rows = [data["sizes"][str(h)] for h in hours if h >= since]
    total = sum(r[0] for r in rows)
    small = sum(r[1] for r in rows)
    if total < MIN_MESSAGES or small < SMALL_SHARE * total:
        return []
    return [Recommendation(
        device, "unutilized-messages", "message size", "Low",
        "%d of %d messages (%d %%) in its last 24 h were under %d bytes, each billed as a 4 KB "
        "block" % (small, total, round(100.0 * small / total), SMALL_BYTES),
        "Lengthen the windows (%s, e.g. \"60,240,1440\" minutes) or lower the collectors' "
        "*_MessageFrequency, so each message carries more events and uses its 4 KB block."
        % PRIORITY_INTERVALS,
        [{"messages": total, "under_bytes": SMALL_BYTES, "small": small,
          "since": format_time(since), "until": format_time(hours[-1] + HOUR)}],
        first=float(since), last=float(hours[-1] + HOUR), count=small)]


def _settings(device, reported):
    """Conflicts in the agent settings DEVICE reports (microagent's reported properties:
    {"config": keys in force, "config_rejected": key -> reason})."""
    found = []
    rejected = reported.get("config_rejected")
    if isinstance(rejected, dict):
        refused = {str(k)[:100]: str(v)[:200] for k, v in rejected.items() if v is not None}
        if refused:
            found.append(Recommendation(
                device, "settings-refused", "desired properties", "Medium",
                "the agent refuses %d desired setting(s), the previous values stay in force: %s"
                % (len(refused), "; ".join("%s (%s)" % kv for kv in sorted(refused.items())[:5])),
                "Fix these keys in the device twin's desired properties (a cache size above "
                "the board's budget, a value out of range); until then the device does not run "
                "the configuration the twin shows.",
                [{"key": k, "reason": v} for k, v in sorted(refused.items())]))
    config = reported.get("config")
    if isinstance(config, dict):
        found += _window_over_timeout(device, config)
    return found


def _window_over_timeout(device, config):
    """A collector whose window is longer than IothubModule_MessageTimeout: its message, if it
    waits for a connection, expires before one window has passed, so a device offline for
    less than a window loses it."""
    try:
        intervals = parse_intervals(config.get(PRIORITY_INTERVALS))
    except ValueError:
        return []
    timeout = config.get(MESSAGE_TIMEOUT)
    if type(timeout) is not int or timeout < 1:
        return []
    longer = []
    for collector in COLLECTORS:
        if config.get(collector + "_Disabled") is True:
            continue
        frequency = config.get(collector + "_MessageFrequency")
        if frequency in FREQUENCIES and intervals[FREQUENCIES.index(frequency)] > timeout:
            longer.append({"collector": collector, "frequency": frequency,
                           "window_min": intervals[FREQUENCIES.index(frequency)]})
    if not longer:
        return []
    return [Recommendation(
        device, "settings-conflict", "%s below a window" % MESSAGE_TIMEOUT, "Medium",
        "%s is %d min, shorter than the window of %s" % (
            MESSAGE_TIMEOUT, timeout, ", ".join("%s (%d min)" % (c["collector"], c["window_min"])
                                                for c in longer)),
        "A message waiting for the hub expires before one window has passed: raise %s above "
        "%d min or shorten %s." % (MESSAGE_TIMEOUT, max(c["window_min"] for c in longer),
                                   PRIORITY_INTERVALS),
        [dict(c, timeout_min=timeout) for c in longer])]
