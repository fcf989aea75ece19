"""Evaluates the alert rules over each device's messages, in arrival order, with state per
device: the values seen in its learning period (its baseline), sliding windows for bursts, its
last Baseline and SBoM reports, its outbox sequence numbers and the spacing of its windows.

An alert's times are the device's (the events' timestamps, clamped to years 1970..9999), so a
replayed day gives the alerts that day would have given; a device's timestamps are evidence
about itself only. Every clock that spans devices is the hub's: silence (a device the hub has
not heard from), the fleet's clock and the hourly alert budget run on arrival times, so
nothing a device sends moves another device's clock.

What a device can make the engine hold is bounded: alert lines per device and hour of arrival
(and per rule within it), the distinct keys of each rule's state; what was left out is counted
in the device's state ("capped", shown on its console page).
"""
import collections

from host_sim.cloud.alerts import hub_events
from host_sim.cloud.alerts.detect import Detector
from host_sim.cloud.alerts.messages import format_time, message_time, parse_time
from host_sim.cloud.alerts.rules import SEVERITIES

DEFAULT_MAX_EVIDENCE = 20
DEFAULT_MAX_ALERTS = 100
STATE_VERSION = 2   # of export_device's data; bump when _Device changes shape (2: budgets by arrival)
MAX_NEW_ALERTS_PER_HOUR = 50   # alert lines per device and hour of arrival, the folded ones included
MAX_NEW_ALERTS_PER_RULE_HOUR = 25   # of those, per rule; the rest of the hour is folded
BUDGET_RULE = "alert-budget"   # the folded lines' rule: one per device, severity and hour
# lines of the hourly budget kept for what is not a rule's own line: one folded line per
# severity, and the readers' malformed-messages line (hub_events.MALFORMED, one an hour)
RESERVED_LINES = len(SEVERITIES) + 1
MAX_RULE_KEYS = 10000      # distinct keys a device can make one rule remember (seen, bursts, report)
MAX_KEY_TEXT = 2048        # characters of a key kept (the agent's own cap on a string)
MAX_GAPS = 256             # distinct window spacings counted per device
MAX_BOOTS = 64             # outbox boot ids followed per device
MIN_TIME, MAX_TIME = 0.0, 253402300799.0   # 1970-01-01 .. 9999-12-31T23:59:59Z
SUMMARISED = ("sweep", "process_burst", "egress", "flood")   # kinds whose alert is one burst's running summary


class Alert:
    """One alert: a rule that matched on a device for one key (an address, a command line...).
    Later matches for the same key update it (last time, count, evidence) instead of adding one."""

    __slots__ = ("device", "rule", "severity", "key", "title", "what_to_do", "first", "last",
                 "count", "evidence", "max_evidence", "technique", "tactic")

    def __init__(self, device, rule, key, first, max_evidence):
        self.device = device
        self.rule = rule["id"]
        self.severity = rule["severity"]
        self.technique = list(rule.get("technique", []))
        self.tactic = rule.get("tactic")
        self.key = key
        self.title = ""
        self.what_to_do = ""
        self.first = first
        self.last = first
        self.count = 0
        self.evidence = []
        self.max_evidence = max_evidence

    def add(self, t, item):
        self.first = min(self.first, t)
        self.last = max(self.last, t)
        self.count += 1
        if len(self.evidence) < self.max_evidence:
            self.evidence.append(item)

    def as_dict(self):
        return {"kind": "alert", "device": self.device, "rule": self.rule,
                "severity": self.severity,
                "technique": self.technique, "tactic": self.tactic,
                "key": self.key, "title": self.title, "first": format_time(self.first),
                "last": format_time(self.last), "count": self.count,
                "evidence": self.evidence, "what_to_do": self.what_to_do}


def clamp_time(t):
    """A device's time T (epoch s) within 1970..9999, so it can always be shown."""
    return MIN_TIME if t < MIN_TIME else MAX_TIME if t > MAX_TIME else t


def capped(state, what, n=1):
    """Counts N things of WHAT a device sent that its state had no room left for."""
    counts = state.detect.setdefault("capped", {})
    counts[what] = counts.get(what, 0) + n


def _bounded(values):
    """VALUES (a tuple of item fields) as a key of bounded size: texts cut at MAX_KEY_TEXT, a
    list or an object (where a value was expected) as its text."""
    for v in values:
        if not (type(v) in _SHORT_TYPES or (type(v) is str and len(v) <= MAX_KEY_TEXT)):
            return tuple(v[:MAX_KEY_TEXT] if isinstance(v, str) else v
                         if isinstance(v, (int, float, bool, type(None)))
                         else repr(v)[:MAX_KEY_TEXT] for v in values)
    return values


_SHORT_TYPES = (int, float, bool, type(None))


class _Fields(dict):
    def __missing__(self, key):
        return "?"


def _render(template, fields):
    try:
        return template.format_map(fields)
    except (KeyError, IndexError, AttributeError, ValueError, TypeError):
        return template


class _Device:
    def __init__(self, first_time, learning_s):
        self.first_time = first_time
        self.learning_until = first_time + learning_s
        self.last_time = None        # newest device time of any message
        self.last_arrival = None
        self.last_window_time = None  # newest time of a message with Triggered events
        self.gaps = collections.Counter()
        self.messages = 0
        self.seen = collections.defaultdict(set)
        self.alerted = collections.Counter()
        self.bursts = collections.defaultdict(dict)
        self.burst_limit = {}          # rule id -> key count that triggers forgetting old keys
        self.reports = {}
        self.sequences = {}
        self.detect = {}               # the detections' state (host_sim.cloud.alerts.detect)

    def window_s(self, default):
        """The device's window length: the commonest spacing of its window messages (empty
        windows send nothing, so gaps are multiples of it), DEFAULT until two are known."""
        if sum(self.gaps.values()) < 2:
            return default
        best = max(self.gaps.items(), key=lambda kv: (kv[1], -kv[0]))[0]
        return float(best) if best > 0 else default


def _compiled_where(where):
    """{"field": value or [values]} -> ((field, values), ...) for _matching."""
    return tuple((field, tuple(wanted) if isinstance(wanted, list) else (wanted,))
                 for field, wanted in (where or {}).items())


def _matching(items, where):
    """The ITEMS (payload dicts) whose fields have the wanted values (all of them when WHERE
    is empty); a list comprehension per field, the per-item cost being the hot path."""
    for field, wanted in where:
        items = [item for item in items if item.get(field) in wanted]
    return items


class AlertEngine:
    """RULES (host_sim.cloud.alerts.rules.Rules). feed() each message as it arrives; it returns the
    alerts it raised or changed. check_silence() at the end of a batch or now and then.
    BUDGET: (alert lines per device and hour of arrival, of which per rule)."""

    def __init__(self, rules, budget=(MAX_NEW_ALERTS_PER_HOUR, MAX_NEW_ALERTS_PER_RULE_HOUR)):
        self.rules = rules
        self.budget = budget
        self.devices = {}
        self.alerts = {}
        self._by_event = collections.defaultdict(list)
        self._sequence_rules = []
        self._silence_rules = []
        self._where = {rule["id"]: _compiled_where(rule.get("where")) for rule in rules.rules}
        self.detector = Detector(rules.rules, rules.sets, rules.device_tags)
        self._hub_rules = hub_events.rules_by_record(rules.rules)
        for rule in rules.rules:
            if "event" in rule:
                self._by_event[rule["event"]].append(rule)
            elif rule["kind"] == "sequence_gap":
                self._sequence_rules.append(rule)
            elif rule["kind"] == "silence":
                self._silence_rules.append(rule)
        self.newest_arrival = None   # the fleet's clock: the hub's newest arrival time
        self._arrival = None         # the arrival of the message being fed (the budget's hour)

    # ---- the stream -----------------------------------------------------------------------

    def feed(self, device, properties, message, arrival):
        """One message (read by read_message) of DEVICE with its PROPERTIES, stored at ARRIVAL
        (epoch seconds). Returns the alerts raised or updated, each once."""
        t_msg = message_time(message, None)
        self._arrival = arrival
        state = self.devices.get(device)
        if t_msg is None:
            # no date of its own (none, or none the reader kept): the device's clock as the hub
            # saw it run since its last message, never the hub's clock itself, which would open
            # a false silence between a device's old dates and the hub's present
            t_msg = arrival if state is None or state.last_time is None else \
                state.last_time + max(0.0, arrival - state.last_arrival)
        t_msg = clamp_time(t_msg)
        if state is None:
            state = self.devices[device] = _Device(t_msg, self.rules.learning_s)
        state.messages += 1
        changed = {}
        if state.last_time is not None and t_msg > state.last_time:
            for rule in self._silence_rules:
                self._silence_gap(device, state, rule, state.last_time, t_msg, changed)
        has_window = any(e.get("Category") == "Triggered" for e in message["Events"])
        if has_window:
            if state.last_window_time is not None and t_msg > state.last_window_time:
                gap = round(t_msg - state.last_window_time)
                if gap in state.gaps or len(state.gaps) < MAX_GAPS:
                    state.gaps[gap] += 1
                else:
                    capped(state, "window spacings")
            if state.last_window_time is None or t_msg > state.last_window_time:
                state.last_window_time = t_msg
        if state.last_time is None or t_msg > state.last_time:
            state.last_time = t_msg
        state.last_arrival = arrival
        if self.newest_arrival is None or arrival > self.newest_arrival:
            self.newest_arrival = arrival
        for rule in self._sequence_rules:
            self._sequence(device, state, rule, (properties or {}).get(rule["property"]), t_msg,
                           changed)
        learning = t_msg < state.learning_until
        if "since" not in state.detect:
            state.detect["since"] = state.first_time   # the detections' learning clock
        for event in message["Events"]:
            for rule, key, t, evidence, fields in self.detector.feed(device, state.detect, event,
                                                                     t_msg, parse_time):
                alert = self._raise(device, rule, key, t, evidence, fields, changed)
                if rule["kind"] in SUMMARISED:
                    alert.evidence = [evidence]   # one burst: its latest counts, not each step
            rules = self._by_event.get(event["Name"])
            if not rules:
                continue
            for rule in rules:
                kind = rule["kind"]
                if kind == "new":
                    self._new(device, state, rule, event, t_msg, learning, changed)
                elif kind == "burst":
                    self._burst(device, state, rule, event, t_msg, changed)
                elif kind == "each":
                    self._each(device, rule, event, t_msg, changed)
                else:
                    self._report(device, state, rule, event, t_msg, changed)
        return list(changed.values())

    def feed_hub_event(self, event):
        """One record of the hub (hub_events.HubEvent) -> the alerts it raised or updated; a
        record read again after the hub counted more sets its alert, it does not add to it."""
        changed = []
        for rule in self._hub_rules.get(event.kind, ()):
            ident = (event.device, rule["id"], hub_events.alert_key(event))
            alert = self.alerts.get(ident)
            if alert is None:
                alert = self.alerts[ident] = Alert(event.device, rule, ident[2], event.first, 1)
            hub_events.fill(alert, rule, event, lambda template, fields: _render(
                template, _Fields(fields)))
            changed.append(alert)
        return changed

    def check_silence(self, now=None):
        """Raises silence for every device the hub has not heard from for its rule's windows up
        to NOW (the hub's time, as arrival times are; default: the newest arrival). The alert
        is told in the device's own time: its last message's time plus the hub's time since."""
        now = self.newest_arrival if now is None else now
        changed = {}
        if now is None:
            return []
        self._arrival = now
        for device, state in self.devices.items():
            if state.last_time is None or state.last_arrival is None:
                continue
            until = state.last_time + max(0.0, now - state.last_arrival)
            for rule in self._silence_rules:
                self._silence_gap(device, state, rule, state.last_time, clamp_time(until),
                                  changed, ongoing=True)
        return list(changed.values())

    def fleet_now(self, wall_now):
        """The fleet's clock at WALL_NOW while following: the hub's time, never behind the
        newest arrival."""
        if self.newest_arrival is None:
            return None
        return max(self.newest_arrival, wall_now)

    def sorted_alerts(self):
        return sorted(self.alerts.values(), key=lambda a: (a.first, a.device, a.rule, a.key))

    # ---- one device's state, as JSON-safe data (the cloud store keeps it) --------------------

    def export_device(self, device):
        """DEVICE's learned state and its alerts as plain data (lists, dicts, str, numbers);
        None when the engine has never seen it."""
        state = self.devices.get(device)
        if state is None:
            return None
        return {"version": STATE_VERSION, "device": _device_dict(state),
                "alerts": [_alert_dict(a) for ident, a in self.alerts.items()
                           if ident[0] == device]}

    def import_device(self, device, data):
        """Restores what export_device returned for DEVICE (replacing what the engine had);
        alerts of rules that are no longer enabled are dropped. ValueError when DATA is not
        such a state."""
        if isinstance(data, dict) and data.get("version") == 1:
            data = _upgraded(data)
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise ValueError("not a device state of version %d" % STATE_VERSION)
        try:
            state = _device_of(data["device"], self.rules)
            alerts = [_alert_of(device, item, self.rules) for item in data["alerts"]]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError("device state of %s is damaged (%s)" % (device, exc)) from None
        self.forget_device(device)
        self.devices[device] = state
        for alert in alerts:
            if alert is not None:
                self.alerts[(device, alert.rule, alert.key)] = alert
        if state.last_arrival is not None and (self.newest_arrival is None
                                               or state.last_arrival > self.newest_arrival):
            self.newest_arrival = state.last_arrival
        return state

    def forget_device(self, device):
        """Drops DEVICE's state and alerts from memory (another consumer now owns it)."""
        self.devices.pop(device, None)
        for ident in [ident for ident in self.alerts if ident[0] == device]:
            del self.alerts[ident]

    # ---- rule kinds -------------------------------------------------------------------------

    def _raise(self, device, rule, key, t, item, fields, changed):
        t = clamp_time(t)
        ident = (device, rule["id"], key)
        alert = self.alerts.get(ident)
        if alert is None and not self._within_budget(device, rule):
            return self._fold(device, rule, key, t, item, fields, changed)
        if alert is None:
            alert = self.alerts[ident] = Alert(device, rule, key, t,
                                               rule.get("max_evidence", DEFAULT_MAX_EVIDENCE))
        alert.add(t, item)
        values = _Fields(fields)
        for name, spec in rule.get("lookup", {}).items():
            values[name] = spec["map"].get(values.get(spec["from"]), "?")
        values["count"] = alert.count
        values.setdefault("key", key)
        alert.title = _render(rule["title"], values)
        alert.what_to_do = _render(rule["what_to_do"], values)
        changed[ident] = alert
        return alert

    def _budget(self, device):
        """DEVICE's alert lines in the current hour of arrival: [hour, lines, {rule: lines}]."""
        state = self.devices[device]
        hour = int((self._arrival or 0.0) // 3600)
        budget = state.detect.get("alert_budget")
        if not isinstance(budget, list) or len(budget) != 3 or budget[0] != hour:
            budget = state.detect["alert_budget"] = [hour, 0, {}]
        return budget

    def _within_budget(self, device, rule):
        """Whether DEVICE may have one more alert line of RULE in this hour of arrival (a device
        cannot leave it by dating its events elsewhere): MAX_NEW_ALERTS_PER_RULE_HOUR per rule,
        MAX_NEW_ALERTS_PER_HOUR in all, RESERVED_LINES of them kept for what is folded and for
        the malformed-messages line."""
        if device not in self.devices:
            return True
        budget = self._budget(device)
        per_rule = budget[2].get(rule["id"], 0)
        if per_rule >= self.budget[1] or budget[1] >= self.budget[0] - RESERVED_LINES:
            return False
        budget[1] += 1
        budget[2][rule["id"]] = per_rule + 1
        return True

    def _fold(self, device, rule, key, t, item, fields, changed):
        """An alert past DEVICE's hourly budget: counted in one line per severity and hour of
        arrival, which names how many of each rule it holds and the latest."""
        hour = self._budget(device)[0] * 3600
        severity = rule["severity"]
        fold_key = "%s alerts past the hourly budget, arrived from %s" % (
            severity, format_time(clamp_time(hour)))
        ident = (device, BUDGET_RULE, fold_key)
        alert = self.alerts.get(ident)
        if alert is None:
            alert = self.alerts[ident] = Alert(device, budget_rule(severity), fold_key, t, 1)
            alert.evidence = [{"rules": {}, "latest": None}]
        alert.add(t, item)
        rules = dict(alert.evidence[0]["rules"])   # a new summary: a page may be showing the old
        rules[rule["id"]] = rules.get(rule["id"], 0) + 1
        summary = {"rules": rules, "latest": {"rule": rule["id"], "key": str(key)[:256]}}
        alert.evidence = [summary]
        capped(self.devices[device], "alerts past the hourly budget")
        counts = ", ".join("%s %d" % kv for kv in sorted(summary["rules"].items(),
                                                             key=lambda kv: (-kv[1], kv[0]))[:5])
        alert.title = "%d more %s alerts past this device's budget of %d an hour (%s; latest: %s)" % (
            alert.count, severity, self.budget[0], counts,
            _render(rule["title"], _Fields(fields))[:256])
        alert.what_to_do = ("The device sent more than its hourly budget of alerts: look at the "
                            "rules named here on its page, and at the device itself.")
        changed[ident] = alert
        return alert

    @staticmethod
    def _key(item, per):
        return " ".join(map(str, map(item.get, per)))[:MAX_KEY_TEXT]

    def _new(self, device, state, rule, event, t_msg, learning, changed):
        seen = state.seen[rule["id"]]
        where = self._where[rule["id"]]
        per = rule["per"]
        for item in _matching(event["Payload"], where):
            key = _bounded(tuple(map(item.get, per)))
            if key in seen:
                continue
            if len(seen) < MAX_RULE_KEYS:
                seen.add(key)
            else:
                capped(state, "%s values" % rule["id"])
            if learning:
                continue
            t = parse_time(item.get("timestamp")) or t_msg
            if self._grouped(device, state, rule, item, t, changed):
                continue
            limit = rule.get("max_alerts", DEFAULT_MAX_ALERTS)
            state.alerted[rule["id"]] += 1
            if state.alerted[rule["id"]] > limit:
                alert = self._raise(device, rule, "(more)", t, item, item, changed)
                alert.title = "%d more new values after the first %d (latest: %s)" % (
                    alert.count, limit, _render(rule["title"], _Fields(item)))
            else:
                self._raise(device, rule, self._key(item, per), t, item, item, changed)

    def _grouped(self, device, state, rule, item, t, changed):
        """After group_after new values within group_within_s of each other, the rest of that
        burst (a scan's destinations) is one alert with counts instead of one each."""
        group_after = rule.get("group_after")
        if not group_after:
            return False
        bursts = state.detect.setdefault("new_bursts", {})
        burst = bursts.get(rule["id"])
        if burst is None or t - burst["last"] > rule.get("group_within_s", 300):
            burst = bursts[rule["id"]] = {"start": t, "last": t, "values": 0}
        burst["last"] = max(burst["last"], t)
        burst["values"] += 1
        if burst["values"] <= group_after:
            return False
        since = format_time(clamp_time(burst["start"]))
        alert = self._raise(device, rule, "burst since " + since, t, item, item, changed)
        alert.title = "%d more new values in a burst since %s (latest: %s)" % (
            alert.count, since, _render(rule["title"], _Fields(item)))
        return True

    def _burst(self, device, state, rule, event, t_msg, changed):
        where = self._where[rule["id"]]
        per = rule["per"]
        count = rule["count"]
        within = rule["within_s"]
        windows = state.bursts[rule["id"]]
        matching = [(parse_time(item.get("timestamp")) or t_msg, item)
                    for item in _matching(event["Payload"], where)]
        if not matching:
            return
        matching.sort(key=lambda pair: pair[0])
        if len(windows) > state.burst_limit.get(rule["id"], 1024):
            # forget keys (an address tried once) whose newest item is out of the time window:
            # a busy gateway sees thousands of them a day, and following must not grow forever
            oldest = matching[0][0] - within
            for key in [k for k, recent in windows.items() if recent[-1][0] < oldest]:
                del windows[key]
            state.burst_limit[rule["id"]] = min(MAX_RULE_KEYS, max(1024, 2 * len(windows)))
        for t, item in matching:
            key = self._key(item, per)
            recent = windows.get(key)
            if recent is None:
                if len(windows) >= MAX_RULE_KEYS:
                    capped(state, "%s keys" % rule["id"])
                    continue
                recent = windows[key] = collections.deque(maxlen=count)
            recent.append((t, item))
            if len(recent) < count or t - recent[0][0] > within:
                continue
            ident = (device, rule["id"], key)
            fields = dict(item, within_s=within)
            if ident in self.alerts:
                self._raise(device, rule, key, t, item, fields, changed)
            else:
                for earlier_t, earlier in recent:
                    self._raise(device, rule, key, earlier_t, earlier, fields, changed)

    def _each(self, device, rule, event, t_msg, changed):
        for item in _matching(event["Payload"], self._where[rule["id"]]):
            t = parse_time(item.get("timestamp")) or t_msg
            self._raise(device, rule, self._key(item, rule["per"]), t, item, item, changed)

    def _report(self, device, state, rule, event, t_msg, changed):
        """A periodic report (Baseline, SBoM) may be split over several messages that share
        its event time; it is compared item by item with the previous report. What it lacks
        is known only once it is whole, when the next report begins: removals are raised then."""
        t_report = parse_time(event.get("TimestampUTC")) or t_msg
        report = state.reports.get(rule["id"])
        if report is None:
            report = state.reports[rule["id"]] = {"time": t_report, "current": {},
                                                  "previous": None}
        elif t_report != report["time"]:
            if t_report < report["time"]:
                return  # a late copy of an older report
            if report["previous"] is not None and "removed" in rule["changes"]:
                self._removed(device, rule, report, changed)
            report["previous"], report["current"], report["time"] = report["current"], {}, t_report
        where = self._where[rule["id"]]
        value_field = rule.get("value")
        previous = report["previous"]
        for item in _matching(event["Payload"], where):
            key = self._key(item, rule["per"])
            value = item.get(value_field) if value_field else None
            if key not in report["current"] and len(report["current"]) >= MAX_RULE_KEYS:
                capped(state, "%s items" % rule["id"])
                continue
            report["current"][key] = item
            if previous is None:
                continue
            if key not in previous:
                change, before = "added", "(none)"
            elif value_field and previous[key].get(value_field) != value:
                change, before = "changed", previous[key].get(value_field)
            else:
                continue
            if change in rule["changes"]:
                evidence = dict(item, change=change, previous=before)
                self._raise(device, rule, key, t_report, evidence, evidence, changed)

    def _removed(self, device, rule, report, changed):
        """Items of the report before REPORT's current (now whole) one that it no longer has."""
        value_field = rule.get("value")
        for key, item in report["previous"].items():
            if key not in report["current"]:
                evidence = dict(item, change="removed",
                                previous=item.get(value_field, "(none)") if value_field else "(none)")
                if value_field:
                    evidence[value_field] = "(none)"
                self._raise(device, rule, key, report["time"], evidence, evidence, changed)

    def _sequence(self, device, state, rule, message_id, t_msg, changed):
        """Firmware message ids are BOOT-SEQ, SEQ counting up from the outbox: a jump means
        the outbox dropped what lies between. Other ids (the host agent's) carry no order."""
        if not isinstance(message_id, str):
            return
        boot, sep, number = message_id.rpartition("-")
        if not sep or not boot or not number.isdigit():
            return
        seq = int(number)
        highest = state.sequences.get(boot)
        if highest is None and len(state.sequences) >= MAX_BOOTS:
            del state.sequences[next(iter(state.sequences))]   # the boot seen first
            capped(state, "boots followed")
        state.sequences[boot] = seq if highest is None else max(highest, seq)
        if highest is None or seq <= highest + 1:
            return
        evidence = {"boot": boot, "from_seq": highest + 1, "to_seq": seq - 1,
                    "missing": seq - highest - 1, "next_message_id": message_id}
        self._raise(device, rule, "%s:%d-%d" % (boot, highest + 1, seq - 1), t_msg, evidence,
                    evidence, changed)

    def _silence_gap(self, device, state, rule, since, until, changed, ongoing=False):
        window = state.window_s(rule["default_window_s"])
        limit = rule["windows"] * window
        if until - since <= limit:
            return
        since, until = clamp_time(since), clamp_time(until)
        key = "since " + format_time(since)
        ident = (device, rule["id"], key)
        evidence = {"last_message": format_time(since),
                    "next_message": None if ongoing else format_time(until),
                    "window_s": window}
        fields = {"silent_s": int(until - since), "windows": rule["windows"],
                  "window_s": int(window)}
        alert = self.alerts.get(ident)
        if alert is not None:
            # the same silence seen again: a later clock extends it quietly; the device coming
            # back ends it, and that is news
            alert.last = max(alert.last, until)
            alert.title = _render(rule["title"], _Fields(fields))
            if not ongoing:
                alert.evidence = [evidence]
                changed[ident] = alert
            return
        alert = self._raise(device, rule, key, since, evidence, fields, changed)
        alert.last = until


# ---- _Device and Alert <-> plain data (sets, Counters, deques and tuples have no JSON form) -----

def _device_dict(state):
    return {
        "first_time": state.first_time, "learning_until": state.learning_until,
        "last_time": state.last_time, "last_arrival": state.last_arrival,
        "last_window_time": state.last_window_time,
        "gaps": sorted([gap, n] for gap, n in state.gaps.items()),
        "messages": state.messages,
        # the keys of a "new" rule are tuples of field values: a JSON list each, in a stable order
        "seen": {rule: sorted((list(key) for key in keys), key=_stable)
                 for rule, keys in state.seen.items()},
        "alerted": dict(state.alerted),
        "bursts": {rule: {key: [[t, item] for t, item in recent] for key, recent in windows.items()}
                   for rule, windows in state.bursts.items()},
        "burst_limit": dict(state.burst_limit),
        "reports": state.reports,
        "sequences": state.sequences,
        "detect": state.detect,
    }


def _stable(value):
    return repr(value)


def _device_of(data, rules):
    state = _Device(data["first_time"], 0.0)
    state.learning_until = float(data["learning_until"])
    state.last_time = data["last_time"]
    state.last_arrival = data["last_arrival"]
    state.last_window_time = data["last_window_time"]
    state.gaps = collections.Counter({int(gap): int(n) for gap, n in data["gaps"]})
    state.messages = int(data["messages"])
    for rule, keys in data["seen"].items():
        state.seen[rule] = {tuple(key) for key in keys}
    state.alerted = collections.Counter({rule: int(n) for rule, n in data["alerted"].items()})
    for rule_id, windows in data["bursts"].items():
        rule = rules.by_id(rule_id)
        if rule is None or rule.get("kind") != "burst":
            continue
        state.bursts[rule_id] = {
            key: collections.deque(((float(t), item) for t, item in recent), maxlen=rule["count"])
            for key, recent in windows.items()}
    state.burst_limit = {rule: int(n) for rule, n in data["burst_limit"].items()}
    state.reports = dict(data["reports"])
    state.sequences = {boot: int(seq) for boot, seq in data["sequences"].items()}
    detect = data.get("detect", {})
    if not isinstance(detect, dict):
        raise ValueError("detect is not an object")
    state.detect = detect
    return state


def _alert_dict(alert):
    return {"rule": alert.rule, "severity": alert.severity, "key": alert.key,
            "title": alert.title, "what_to_do": alert.what_to_do, "first": alert.first,
            "last": alert.last, "count": alert.count, "evidence": alert.evidence,
            "max_evidence": alert.max_evidence}


def budget_rule(severity):
    """The rule of the lines that fold a device's alerts past its hourly budget."""
    return {"id": BUDGET_RULE, "severity": severity}


def _upgraded(data):
    """A state of version 1 as version 2: its hourly budget counted device time, so it
    starts again (the first message fed sets its hour of arrival)."""
    device = data.get("device")
    if isinstance(device, dict) and isinstance(device.get("detect"), dict):
        detect = {k: v for k, v in device["detect"].items() if k != "alert_budget"}
        data = dict(data, device=dict(device, detect=detect))
    return dict(data, version=STATE_VERSION)


def _alert_of(device, data, rules):
    """The Alert DATA describes, or None when its rule is gone."""
    if data["rule"] == BUDGET_RULE and data["severity"] in SEVERITIES:
        rule = budget_rule(data["severity"])
    else:
        rule = rules.by_id(data["rule"])
    if rule is None:
        return None
    alert = Alert(device, rule, data["key"], float(data["first"]), int(data["max_evidence"]))
    alert.title = data["title"]
    alert.what_to_do = data["what_to_do"]
    alert.last = float(data["last"])
    alert.count = int(data["count"])
    alert.evidence = list(data["evidence"])
    return alert
