"""What the console shows, built from the hub's store and kept up to date incrementally: per
device its traffic (messages, 4 KB blocks, events per hour), what it reported (processes,
connections, logins, baseline failures, SBoM, system information) and its alerts.

Everything a device sent is hostile: every table is bounded, a value of any type is shown as
text (never a key that cannot be hashed), device times are clamped to 1970..9999. The pages
copy what they show under the lock (snapshots) and render after it."""
import collections
import threading

from host_sim.metering import FREE_BLOCK, blocks as metered_blocks

from host_sim.cloud.alerts import recommend
from host_sim.cloud.alerts.addresses import endpoint
from host_sim.cloud.alerts.engine import clamp_time
from host_sim.cloud.alerts.messages import UnreadableMessage, message_time, read_checked
from host_sim.cloud.alerts.run import Evaluation

HOUR = 3600
MAX_ROWS = 5000       # distinct processes / connections / report items / collectors per device
MAX_LOGINS = 200      # newest logins kept per device
MAX_HOURS = 24 * 400  # distinct hours counted per device; later ones count in their hour of arrival
TOP_ROWS = 100        # rows of a device's process and connection tables shown
SCALARS = (str, int, float, bool, type(None))


def _keyable(value):
    """VALUE as it can key a table: itself when it is a scalar, else its text (bounded)."""
    return value if isinstance(value, SCALARS) else repr(value)[:512]


class DeviceView:
    def __init__(self, device):
        self.device = device
        self.messages = 0
        self.blocks = 0
        self.free_blocks = 0           # in the Free tier's 0.5 KB blocks
        self.bytes = 0
        self.skipped = 0
        self.first_time = None
        self.last_time = None
        self.last_seen = None          # arrival at the hub
        self.min_gap = None            # smallest spacing of two messages (about one window)
        self.agent_id = None
        self.hourly = collections.defaultdict(lambda: [0, 0, 0])   # hour -> messages, blocks, events
        self.dropped = collections.Counter()                       # collector -> dropped+evicted
        self.processes = {}
        self.connections = {}
        self.other_rows = collections.Counter()
        self.logins = collections.deque(maxlen=MAX_LOGINS)
        self.login_counts = collections.Counter()
        self.reports = {}              # Baseline/SBoM/SystemInformation -> (time, items)
        self.left_out = collections.Counter()   # what did not fit the tables above

    @property
    def days(self):
        """Days of the device's life its messages cover: from the start of its first window
        (one message spacing before its first message) to its last message; at least an hour,
        so a device seen once is not extrapolated wildly."""
        if self.first_time is None:
            return 1.0
        span = self.last_time - self.first_time + (self.min_gap or 0)
        return max(HOUR, span) / 86400.0

    def add(self, message, size, arrival):
        """Counts MESSAGE in; returns (its hour, blocks, events) for the fleet's chart."""
        t = clamp_time(message_time(message, arrival))
        self.messages += 1
        blocks = metered_blocks(size)
        self.blocks += blocks
        self.free_blocks += metered_blocks(size, FREE_BLOCK)
        self.bytes += size
        if self.last_time is not None and t > self.last_time:
            gap = t - self.last_time
            self.min_gap = gap if self.min_gap is None else min(self.min_gap, gap)
        self.first_time = t if self.first_time is None else min(self.first_time, t)
        self.last_time = t if self.last_time is None else max(self.last_time, t)
        self.last_seen = arrival if self.last_seen is None else max(self.last_seen, arrival)
        agent_id = message.get("AgentId", self.agent_id)
        self.agent_id = agent_id if isinstance(agent_id, SCALARS) else repr(agent_id)[:128]
        hour = int(t // HOUR) * HOUR
        if hour not in self.hourly and len(self.hourly) >= MAX_HOURS:
            hour = int(arrival // HOUR) * HOUR     # a device dating its messages all over time
            self.left_out["hours (counted at arrival)"] += 1
        bucket = self.hourly[hour]
        bucket[0] += 1
        bucket[1] += blocks
        events = bucket[2]
        for event in message["Events"]:
            name = event["Name"]
            payload = event["Payload"]
            if name == "ProcessCreate":
                bucket[2] += self._processes(payload)
            elif name == "ConnectionCreate":
                bucket[2] += self._connections(payload)
            elif name == "Login":
                bucket[2] += len(payload)
                for item in payload:
                    self.logins.append(item)
                    operation = str(item.get("operation"))[:64]
                    if operation not in self.login_counts and len(self.login_counts) >= 64:
                        operation = "(other)"
                    self.login_counts[operation] += 1
            elif name == "DroppedEvents":
                for item in payload:
                    lost = _int(item.get("dropped")) + _int(item.get("evicted"))
                    collector = str(item.get("collector"))[:256]
                    if collector not in self.dropped and len(self.dropped) >= MAX_ROWS:
                        collector = "(other collectors)"
                    self.dropped[collector] += lost
            elif name in ("Baseline", "SBoM", "SystemInformation"):
                stamp = str(event.get("TimestampUTC"))
                previous = self.reports.get(name)
                if previous is not None and previous[0] == stamp:
                    kept = previous[1]           # one report split over messages
                elif previous is None or stamp > previous[0]:
                    kept = []
                    self.reports[name] = (stamp, kept)
                else:
                    continue
                room = max(0, MAX_ROWS - len(kept))
                kept.extend(payload[:room])
                if len(payload) > room:
                    self.left_out[name + " items"] += len(payload) - room
        return hour, blocks, bucket[2] - events

    def _processes(self, payload):
        events = 0
        for item in payload:
            hits = _int(item.get("hit_count"), 1)
            events += hits
            key = (_keyable(item.get("commandline")), _keyable(item.get("user_id")))
            row = self.processes.get(key)
            if row is None:
                if len(self.processes) >= MAX_ROWS:
                    self.other_rows["processes"] += hits
                    continue
                row = self.processes[key] = {"commandline": key[0], "user_id": key[1],
                                             "user_name": _keyable(item.get("user_name")),
                                             "hits": 0, "last": None}
            row["hits"] += hits
            row["last"] = _keyable(item.get("timestamp"))
        return events

    def _connections(self, payload):
        # addresses arrive canonical (read_checked rewrites every spelling to one), so a
        # connection keys on one row whatever spelling the device sent
        events = 0
        rows = self.connections
        for item in payload:
            get = item.get
            hits = get("hit_count")
            if type(hits) is not int:
                hits = 1
            events += hits
            key = tuple(value if type(value) in SCALARS else _keyable(value) for value in (
                get("transport_protocol"), get("local_address"), get("local_port"),
                get("remote_address"), get("remote_port"), get("direction")))
            row = rows.get(key)
            if row is None:
                if len(rows) >= MAX_ROWS:
                    self.other_rows["connections"] += hits
                    continue
                row = rows[key] = {
                    "protocol": key[0], "local": endpoint(key[1], key[2]),
                    "remote": endpoint(key[3], key[4]), "direction": key[5] or "",
                    "application": _keyable(get("application_protocol")), "hits": 0,
                    "bytes_in": 0, "bytes_out": 0, "host_name": ""}
            row["hits"] += hits
            bytes_in, bytes_out = get("bytes_in"), get("bytes_out")
            if type(bytes_in) is int:
                row["bytes_in"] += bytes_in
            if type(bytes_out) is int:
                row["bytes_out"] += bytes_out
            extended = get("extended_properties")
            if extended and type(extended) is dict and extended.get("host_name"):
                row["host_name"] = str(extended["host_name"])[:256]
        return events


def _int(value, default=0):
    return value if isinstance(value, int) and not isinstance(value, bool) else default


class FleetModel:
    """SOURCE: a host_sim.cloud.alerts.sources.HubStore; RULES: the alert rules. refresh() reads what
    arrived since the last call; safe to call from several request threads."""

    def __init__(self, source, rules):
        self.source = source
        self.evaluation = Evaluation(rules)
        self.advice = []      # the recommendations as of the last refresh
        self.devices = {}
        self.hourly = collections.defaultdict(lambda: [0, 0, 0])   # the fleet's, as DeviceView's
        self.lock = threading.RLock()

    def refresh(self, progress=None):
        """Reads what arrived since the last call; PROGRESS(messages read) hears of a long read
        every 5,000 messages."""
        with self.lock:
            for count, stored in enumerate(self.source.read_new(), 1):
                if progress is not None and count % 5000 == 0:
                    progress(count)
                view = self.devices.get(stored.device)
                if view is None:
                    view = self.devices[stored.device] = DeviceView(stored.device)
                engine = self.evaluation.engine
                try:
                    message, verdict = read_checked(stored.body, stored.properties)
                except UnreadableMessage as exc:
                    view.skipped += 1   # it did arrive: the device is alive
                    view.last_seen = max(view.last_seen or 0.0, stored.arrival)
                    engine.feed_hub_event(self.evaluation.malformed.record(
                        stored.device, stored.arrival, 1, 0, str(exc)))
                    continue
                hour, blocks, events = view.add(message, len(stored.body), stored.arrival)
                fleet = self.hourly[hour]
                fleet[0] += 1
                fleet[1] += blocks
                fleet[2] += events
                if verdict.dropped:
                    engine.feed_hub_event(self.evaluation.malformed.record(
                        stored.device, stored.arrival, 0, verdict.dropped, verdict.reason))
                try:
                    engine.feed(stored.device, stored.properties, message, stored.arrival)
                    recommend.observe(engine.devices[stored.device], message, len(stored.body),
                                      message_time(message, stored.arrival))
                except (TypeError, ValueError, AttributeError):
                    # a value of a type the rules cannot read: that message only is left out
                    view.left_out["messages the rules could not read"] += 1
            for event in self.source.read_hub_events():
                self.evaluation.engine.feed_hub_event(event)
            self.evaluation.engine.check_silence()
            self.advice = recommend.compute(self.evaluation.engine, self.source.hub_facts())

    def recommendations(self, device=None):
        return [r for r in self.advice if device is None or r.device == device]

    def alerts(self, device=None):
        return [a for a in self.evaluation.engine.sorted_alerts()
                if device is None or a.device == device]

    def fleet_snapshot(self):
        """What the fleet page shows, copied under the lock (rendering happens after it)."""
        with self.lock:
            return {"devices": [_summary(v) for v in self.devices.values()],
                    "hourly": [(t, tuple(row)) for t, row in self.hourly.items()],
                    "alerts": list(self.evaluation.engine.alerts.values()),
                    "advice": list(self.advice)}

    def device_snapshot(self, device):
        """What DEVICE's page shows, copied under the lock; None when the hub has not seen it."""
        with self.lock:
            view = self.devices.get(device)
            if view is None:
                return None
            state = self.evaluation.engine.devices.get(device)
            capped = dict(state.detect.get("capped", {})) if state is not None else {}
            return dict(
                _summary(view),
                hourly=[(t, tuple(row)) for t, row in view.hourly.items()],
                alerts=[a for ident, a in self.evaluation.engine.alerts.items()
                        if ident[0] == device],
                advice=self.recommendations(device),
                processes=[dict(r) for r in sorted(view.processes.values(),
                                                   key=lambda r: -r["hits"])[:TOP_ROWS]],
                connections=[dict(r) for r in sorted(view.connections.values(),
                                                     key=lambda r: -r["hits"])[:TOP_ROWS]],
                other_rows=dict(view.other_rows),
                logins=list(view.logins)[::-1][:50],
                login_counts=dict(view.login_counts),
                reports={name: (stamp, list(items)) for name, (stamp, items)
                         in view.reports.items()},
                dropped=sorted(view.dropped.items(), key=lambda kv: (-kv[1], kv[0])),
                left_out=dict(view.left_out, **{"rule state: " + k: n for k, n in capped.items()}))


def _summary(view):
    return {"device": view.device, "messages": view.messages, "blocks": view.blocks,
            "free_blocks": view.free_blocks, "bytes": view.bytes, "skipped": view.skipped,
            "first_time": view.first_time, "last_time": view.last_time,
            "last_seen": view.last_seen, "days": view.days, "agent_id": view.agent_id,
            "dropped": sum(view.dropped.values())}
