"""Incidents: a device's alerts that belong to one attack, as one item to act on.

Two alerts of one device are in the same incident when they are close in time (their spans
within GAP_S of each other) or share a fact within ENTITY_S: a remote address, a user, a
command line or a downloaded file. Low and Informational alerts (a cache that overflowed, a
changed package) stand alone: they are context, not an attack. An incident's id is derived from
its earliest alert, so the same alerts give the same id on every run and every consumer.
"""
from host_sim.cloud.alerts.messages import format_time
from host_sim.cloud.store.base import alert_id as stored_id

GAP_S = 3600.0
ENTITY_S = 86400.0
SEVERITY_RANK = {"High": 3, "Medium": 2, "Low": 1, "Informational": 0}
ENTITY_FIELDS = ("remote_address", "user_name", "commandline", "downloaded", "listed")
MAX_ENTITIES = 32    # per alert: its evidence is bounded, and so is this


def alert_id(alert):
    """The alert's id, as every store and consumer computes it."""
    return stored_id(alert.device, alert.rule, alert.key)


def _entities(alert):
    found = set()
    for item in alert.evidence:
        if not isinstance(item, dict):
            continue
        for field in ENTITY_FIELDS:
            value = item.get(field)
            if isinstance(value, str) and value and value not in ("root", "?", "(none)"):
                found.add((field, value))
                if len(found) >= MAX_ENTITIES:
                    return found
    return found


class Incident:
    __slots__ = ("id", "device", "severity", "first", "last", "alerts", "tactics",
                 "techniques", "title")

    def __init__(self, alerts):
        alerts = sorted(alerts, key=lambda a: (a.first, a.rule, a.key))
        self.alerts = alerts
        self.device = alerts[0].device
        self.id = "inc-" + alert_id(alerts[0])[:16]
        top = max(alerts, key=lambda a: (SEVERITY_RANK.get(a.severity, 0), -a.first))
        self.severity = top.severity
        self.first = min(a.first for a in alerts)
        self.last = max(a.last for a in alerts)
        self.tactics = sorted({a.tactic for a in alerts if a.tactic})
        self.techniques = sorted({t for a in alerts for t in a.technique})
        more = len(alerts) - 1
        self.title = top.title + (" (and %d more alert%s)" % (more, "" if more == 1 else "s")
                                  if more else "")

    def as_dict(self):
        return {"kind": "incident", "incident": self.id, "device": self.device,
                "severity": self.severity, "title": self.title,
                "first": format_time(self.first), "last": format_time(self.last),
                "alerts": len(self.alerts), "tactics": self.tactics,
                "technique": self.techniques,
                "timeline": [{"time": format_time(a.first), "rule": a.rule,
                              "severity": a.severity, "title": a.title,
                              "alert": alert_id(a)} for a in self.alerts]}


def correlate(alerts):
    """ALERTS (engine Alerts, any devices) -> (incidents sorted by severity then recency,
    {alert id: incident id})."""
    by_device = {}
    for alert in alerts:
        if SEVERITY_RANK.get(alert.severity, 0) >= SEVERITY_RANK["Medium"]:
            by_device.setdefault(alert.device, []).append(alert)
    incidents = []
    for device_alerts in by_device.values():
        incidents.extend(_device_incidents(device_alerts))
    incidents.sort(key=lambda i: (-SEVERITY_RANK.get(i.severity, 0), -i.last, i.id))
    membership = {alert_id(a): incident.id for incident in incidents for a in incident.alerts}
    return incidents, membership


def _device_incidents(alerts):
    alerts = sorted(alerts, key=lambda a: (a.first, a.rule, a.key))
    parent = list(range(len(alerts)))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(i, j):
        a, b = root(i), root(j)
        if a != b:
            parent[max(a, b)] = min(a, b)

    # close in time: sorted by start, each joins the previous one still running (plus GAP_S)
    reach_end, reach_index = None, None
    for i, alert in enumerate(alerts):
        if reach_end is not None and alert.first - reach_end <= GAP_S:
            join(i, reach_index)
        if reach_end is None or alert.last > reach_end:
            reach_end, reach_index = alert.last, i
    # a shared fact: the last alert that had it, if within ENTITY_S
    last_with = {}
    for i, alert in enumerate(alerts):
        for entity in _entities(alert):
            previous = last_with.get(entity)
            if previous is not None and alert.first - alerts[previous].last <= ENTITY_S:
                join(i, previous)
            last_with[entity] = i
    groups = {}
    for i, alert in enumerate(alerts):
        groups.setdefault(root(i), []).append(alert)
    return [Incident(group) for group in groups.values()]


def incident_of(engine, alert):
    """The id of the incident ALERT belongs to now, among its device's alerts in ENGINE."""
    alerts = [a for (device, _, _), a in engine.alerts.items() if device == alert.device]
    return correlate(alerts)[1].get(alert_id(alert))
