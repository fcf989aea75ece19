"""Hub-side alerts: the hub emulator's own records of what it refused or noticed (hub.db's
hub_events: invalid or expired SAS tokens, unknown devices, refused topics, a device connected
from two places), read beside the messages and turned into alerts by rules of kind "hub_event".

A record is one claimed device, kind and hour with its running count; its alert is keyed by
that hour, so reading a record again after the hub updated it sets the alert instead of adding
to it (the same identity every time).

The readers keep one such record of their own: a device's malformed messages (refused, or
with items dropped by host_sim.cloud.validate) per hour of arrival, so a device sending them
raises one alert per hour, whatever it sends."""
import collections
import json
import re
import sqlite3

from host_sim.cloud.alerts.messages import format_time, parse_time

# kind -> (required keys, optional keys) besides the common ones (host_sim.cloud.alerts.rules)
KINDS = {"hub_event": ({"record"}, set())}

HubEvent = collections.namedtuple("HubEvent", "id device kind hour first last count peers detail")

MAX_PEERS_SHOWN = 8
MALFORMED = "malformed-messages"
HOUR = 3600


def read_hub_events(db, after, batch=2000):
    """HubEvents with an id above AFTER, oldest first; none from a store older than the table."""
    try:
        rows = db.execute("SELECT id, device, kind, hour, first_time, last_time, count, peers,"
                          " detail FROM hub_events WHERE id > ? ORDER BY id LIMIT ?",
                          (after, batch)).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    events = []
    for row_id, device, kind, hour, first, last, count, peers, detail in rows:
        try:
            peers = json.loads(peers)
        except ValueError:
            peers = []
        first_t, last_t = parse_time(first), parse_time(last)
        if first_t is None or last_t is None or not isinstance(count, int):
            continue
        events.append(HubEvent(row_id, str(device), str(kind), int(hour), first_t, last_t,
                               max(1, count), [str(p) for p in peers][:MAX_PEERS_SHOWN]
                               if isinstance(peers, list) else [], str(detail)))
    return events


def rules_by_record(rules):
    """{record kind: [rules]} of the enabled hub_event rules."""
    found = collections.defaultdict(list)
    for rule in rules:
        if rule["kind"] == "hub_event":
            found[rule["record"]].append(rule)
    return found


def alert_key(event):
    return hour_key(event.hour)


def hour_key(hour):
    """The alert key of a record of HOUR (epoch seconds of its start)."""
    return "hour from " + format_time(hour)


def fill(alert, rule, event, render):
    """Sets ALERT (of RULE) from EVENT, the latest state of its record; RENDER(template, fields)."""
    alert.first, alert.last, alert.count = event.first, event.last, event.count
    alert.evidence = [{"kind": event.kind, "device_claimed": event.device,
                       "peers": event.peers, "count": event.count,
                       "first": format_time(event.first), "last": format_time(event.last),
                       "detail": event.detail}]
    fields = {"device": event.device, "count": event.count, "peers": ", ".join(event.peers),
              "detail": event.detail, "hour": format_time(event.hour), "key": alert.key}
    alert.title = render(rule["title"], fields)
    alert.what_to_do = render(rule["what_to_do"], fields)


_MALFORMED_DETAIL = re.compile(r"([0-9]+) message\(s\) refused, ([0-9]+) item\(s\) dropped; "
                               r"first: (.*)\Z", re.S)


class MalformedTally:
    """Each device's malformed messages in the current hour of arrival (the hub's clock, not
    the device's): messages refused, items dropped and the first reason, as a HubEvent of kind
    MALFORMED for AlertEngine.feed_hub_event (one alert per device and hour, set each time)."""

    def __init__(self):
        self.devices = {}   # device -> [hour, first, last, refused, dropped, first reason]

    def holds(self, device, hour):
        held = self.devices.get(device)
        return held is not None and held[0] == hour

    def restore(self, device, hour, first, last, detail):
        """Takes up DEVICE's counts of HOUR from the alert a reader wrote before (its FIRST and
        LAST times and its evidence's DETAIL), so a restarted reader goes on counting."""
        found = _MALFORMED_DETAIL.match(detail) if isinstance(detail, str) else None
        if found is not None:
            self.devices[device] = [hour, first, last, int(found.group(1)),
                                    int(found.group(2)), found.group(3)]

    def forget(self, device):
        self.devices.pop(device, None)

    def record(self, device, arrival, refused, dropped, reason):
        """REFUSED messages (0 or 1) and DROPPED items of DEVICE that arrived at ARRIVAL
        (epoch seconds), the first REASON (one line) -> the device's HubEvent for that hour."""
        hour = int(arrival // HOUR) * HOUR
        held = self.devices.get(device)
        if held is None or held[0] != hour:
            held = self.devices[device] = [hour, arrival, arrival, 0, 0, reason]
        held[1], held[2] = min(held[1], arrival), max(held[2], arrival)
        held[3] += refused
        held[4] += dropped
        detail = "%d message(s) refused, %d item(s) dropped; first: %s" % (held[3], held[4],
                                                                             held[5])
        return HubEvent(None, device, MALFORMED, hour, held[1], held[2],
                        max(1, held[3] + held[4]), [], detail)
