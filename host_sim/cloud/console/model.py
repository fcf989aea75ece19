"""What the console shows, built from the hub's store and kept up to date incrementally: per
device its traffic (messages, 4 KB blocks, events per hour), what it reported (processes,
connections, logins, baseline failures, SBoM, system information) and its alerts."""
import collections
import threading

from host_sim.metering import FREE_BLOCK, blocks as metered_blocks

from host_sim.cloud.alerts import recommend
from host_sim.cloud.alerts.messages import UnreadableMessage, message_time, read_message
from host_sim.cloud.alerts.run import Evaluation

HOUR = 3600
MAX_ROWS = 5000       # distinct processes / connections kept per device
MAX_LOGINS = 200      # newest logins kept per device


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
        t = message_time(message, arrival)
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
        self.agent_id = message.get("AgentId", self.agent_id)
        bucket = self.hourly[int(t // HOUR) * HOUR]
        bucket[0] += 1
        bucket[1] += blocks
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
                    self.login_counts[str(item.get("operation"))] += 1
            elif name == "DroppedEvents":
                for item in payload:
                    lost = _int(item.get("dropped")) + _int(item.get("evicted"))
                    self.dropped[str(item.get("collector"))] += lost
            elif name in ("Baseline", "SBoM", "SystemInformation"):
                stamp = event.get("TimestampUTC")
                previous = self.reports.get(name)
                if previous is not None and previous[0] == stamp:
                    previous[1].extend(payload)   # one report split over messages
                elif previous is None or str(stamp) > str(previous[0]):
                    self.reports[name] = (stamp, list(payload))

    def _processes(self, payload):
        events = 0
        for item in payload:
            hits = _int(item.get("hit_count"), 1)
            events += hits
            key = (item.get("commandline"), item.get("user_id"))
            row = self.processes.get(key)
            if row is None:
                if len(self.processes) >= MAX_ROWS:
                    self.other_rows["processes"] += hits
                    continue
                row = self.processes[key] = {"commandline": key[0], "user_id": key[1],
                                             "user_name": item.get("user_name"), "hits": 0,
                                             "last": None}
            row["hits"] += hits
            row["last"] = item.get("timestamp")
        return events

    def _connections(self, payload):
        events = 0
        rows = self.connections
        for item in payload:
            get = item.get
            hits = get("hit_count")
            if type(hits) is not int:
                hits = 1
            events += hits
            key = (get("transport_protocol"), get("local_address"), get("local_port"),
                   get("remote_address"), get("remote_port"), get("direction"))
            row = rows.get(key)
            if row is None:
                if len(rows) >= MAX_ROWS:
                    self.other_rows["connections"] += hits
                    continue
                row = rows[key] = {
                    "protocol": key[0], "local": "%s:%s" % (key[1], key[2]),
                    "remote": "%s:%s" % (key[3], key[4]), "direction": key[5] or "",
                    "application": get("application_protocol"), "hits": 0,
                    "bytes_in": 0, "bytes_out": 0, "host_name": ""}
            row["hits"] += hits
            bytes_in, bytes_out = get("bytes_in"), get("bytes_out")
            if type(bytes_in) is int:
                row["bytes_in"] += bytes_in
            if type(bytes_out) is int:
                row["bytes_out"] += bytes_out
            extended = get("extended_properties")
            if extended and type(extended) is dict and extended.get("host_name"):
                row["host_name"] = str(extended["host_name"])
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
        self.lock = threading.Lock()

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
                try:
                    message = read_message(stored.body, stored.properties)
                except UnreadableMessage:
                    view.skipped += 1   # it did arrive: the device is alive
                    view.last_seen = max(view.last_seen or 0.0, stored.arrival)
                    continue
                view.add(message, len(stored.body), stored.arrival)
                self.evaluation.engine.feed(stored.device, stored.properties, message,
                                            stored.arrival)
                recommend.observe(self.evaluation.engine.devices[stored.device], message,
                                  len(stored.body), message_time(message, stored.arrival))
            for event in self.source.read_hub_events():
                self.evaluation.engine.feed_hub_event(event)
            self.evaluation.engine.check_silence()
            self.advice = recommend.compute(self.evaluation.engine, self.source.hub_facts())

    def recommendations(self, device=None):
        return [r for r in self.advice if device is None or r.device == device]

    def alerts(self, device=None):
        return [a for a in self.evaluation.engine.sorted_alerts()
                if device is None or a.device == device]
