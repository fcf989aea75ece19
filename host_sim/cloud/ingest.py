"""Device messages into the cloud store, exactly once: the alert rules run over each message
with its device's state loaded lazily from the store, hourly aggregates are counted, and a
commit writes the states of the devices touched, the alerts changed, the aggregates and the
next position of every partition read, in ONE transaction. A consumer that dies before its
commit is resumed from the positions, with the states those positions go with."""
import fnmatch
import json

from host_sim.cloud.alerts import hub_events, recommend
from host_sim.cloud.alerts.engine import AlertEngine
from host_sim.cloud.alerts.hub_events import MALFORMED, HubEvent, MalformedTally
from host_sim.cloud.alerts.incidents import alert_id as incident_alert_id, correlate
from host_sim.cloud.alerts.messages import UnreadableMessage, message_time, read_checked
from host_sim.cloud.store.base import Batch
from host_sim.metering import FREE_BLOCK, blocks

HOUR = 3600
MAX_DEVICE_ID = 256     # IoT Hub's limit is 128; anything longer is not a device of a hub
MAX_COUNT = 1 << 32     # a device's claimed hit or drop count, bounded before it is summed


def load_tags(path):
    """A tags file (JSON object: device-id glob -> list of tags) -> [(glob, [tags])]; ValueError
    naming the file and what is wrong."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as exc:
        raise ValueError("--tags %s: %s" % (path, exc.strerror)) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError("--tags %s: not JSON (%s)" % (path, getattr(exc, "msg", exc))) from None
    if not isinstance(data, dict):
        raise ValueError("--tags %s: expected an object of device-id glob: [tags]" % path)
    rules = []
    for pattern, tags in data.items():
        if not (isinstance(tags, list) and all(isinstance(t, str) and t for t in tags)):
            raise ValueError("--tags %s: %r must map to a list of non-empty strings"
                             % (path, pattern))
        rules.append((pattern, tags))
    return rules


def _count(value, default):
    if type(value) is not int or value < 0:
        return default
    return min(value, MAX_COUNT)


def hourly_counts(message):
    """(events, dropped) of MESSAGE: process and connection items by their hit counts, logins
    one each (the console's "events"); DroppedEvents items' dropped + evicted."""
    events = dropped = 0
    for event in message["Events"]:
        name = event["Name"]
        if name in ("ProcessCreate", "ConnectionCreate"):
            events += sum(_count(item.get("hit_count"), 1) for item in event["Payload"])
        elif name == "Login":
            events += len(event["Payload"])
        elif name == "DroppedEvents":
            dropped += sum(_count(item.get("dropped"), 0) + _count(item.get("evicted"), 0)
                           for item in event["Payload"])
    return events, dropped


class _Seen:
    """What the ingest holds of a device besides the engine's state."""
    __slots__ = ("source", "partition", "last_arrival", "messages", "skipped", "tags")

    def __init__(self, source, partition, last_arrival, messages, skipped, tags):
        self.source = source
        self.partition = partition
        self.last_arrival = last_arrival
        self.messages = messages      # read and evaluated
        self.skipped = skipped        # unreadable
        self.tags = tags


class Ingest:
    """STORE (host_sim.cloud.store), RULES (load_rules); ON_SKIP(line) hears of every message
    skipped; TAGS: [(device-id glob, [tags])] given to each device the first time this ingest
    loads it."""

    def __init__(self, store, rules, on_skip=None, tags=None):
        self.store = store
        self.engine = AlertEngine(rules)
        self.on_skip = on_skip or (lambda line: None)
        self.tag_rules = tags or []
        self.seen = {}              # device -> _Seen (its state is in the engine)
        self.touched = set()        # devices to write at the next commit
        self.new_tags = {}
        self.changed = {}           # alert identity -> Alert
        self.hourly = {}            # (device, hour) -> [messages, blocks, events, dropped, free blocks]
        self.next = {}              # (source, partition) -> next offset to feed
        self.stored_next = {}       # (source, partition) -> next offset as the store holds it
        self.restored = set()       # identities of the alerts loaded with their devices' states
        self.malformed = MalformedTally()
        self.messages = 0
        self.skipped = 0

    # ---- positions ----------------------------------------------------------------------------

    def positions(self, source, partitions):
        """{partition: next offset to read, None when the store holds none}; a partition this
        ingest has fed since its last commit answers from memory."""
        wanted = list(partitions)
        stored = self.store.positions(source, wanted)
        answer = {}
        for partition in wanted:
            where = (source, partition)
            if where not in self.next or self.next[where] == self.stored_next.get(where):
                self.next[where] = self.stored_next[where] = stored[partition]
            answer[partition] = self.next[where]
        return answer

    def _advance(self, source, partition, offset):
        """False when OFFSET was already fed (a redelivery: the store or memory has it)."""
        where = (source, partition)
        if where not in self.next:
            self.positions(source, [partition])
        known = self.next[where]
        if known is not None and offset < known:
            return False
        self.next[where] = offset + 1
        return True

    # ---- messages -----------------------------------------------------------------------------

    def skip(self, source, partition, offset, reason):
        """A record that is not a device message at all: logged, its position advances."""
        if self._advance(source, partition, offset):
            self.skipped += 1
            self.on_skip("skipped %s partition %s offset %s: %s" % (source, partition, offset,
                                                                    reason))

    def feed(self, source, partition, offset, stored):
        """STORED (a StoredMessage) read at OFFSET of SOURCE's PARTITION -> the alerts it
        raised or changed; a HubEvent (the hub's own record) raises hub-side alerts."""
        if isinstance(stored, HubEvent):
            if not self._advance(source, partition, offset):
                return []
            changed = self.engine.feed_hub_event(stored)
            for alert in changed:
                self.changed[(alert.device, alert.rule, alert.key)] = alert
            return changed
        device = stored.device
        if not isinstance(device, str) or not 0 < len(device) <= MAX_DEVICE_ID:
            self.skip(source, partition, offset, "no device id (or one over %d characters)"
                      % MAX_DEVICE_ID)
            return []
        if not self._advance(source, partition, offset):
            return []
        seen = self._load(device, source, partition)
        seen.source, seen.partition = source, partition
        seen.last_arrival = stored.arrival
        self.touched.add(device)
        try:
            message, verdict = read_checked(stored.body, stored.properties)
            changed = self.engine.feed(device, stored.properties, message, stored.arrival)
            recommend.observe(self.engine.devices[device], message, len(stored.body),
                              message_time(message, stored.arrival))
        except (UnreadableMessage, TypeError) as exc:
            # TypeError: a field value the rules cannot key on, which the format's check
            # (host_sim.cloud.validate) is there to prevent; the stream goes on all the same
            reason = str(exc) if isinstance(exc, UnreadableMessage) else \
                "a field the rules read has an unusable value"
            self.skipped += 1
            seen.skipped += 1
            self.on_skip("skipped %s partition %s offset %s of %s: %s" % (
                source, partition, offset, device, reason))
            return self._malformed(device, stored.arrival, 1, 0, reason)
        if verdict.dropped:
            changed = changed + self._malformed(device, stored.arrival, 0, verdict.dropped,
                                                verdict.reason)
        self.messages += 1
        seen.messages += 1
        events, dropped = hourly_counts(message)
        # the hub's hour, as IoT Hub meters: a device's own dates cannot spread its traffic
        # over the fleet's hours (a 1970 and a 9999 message would stretch every rate)
        hour = int(stored.arrival // HOUR) * HOUR
        counts = self.hourly.get((device, hour))
        if counts is None:
            counts = self.hourly[(device, hour)] = [0, 0, 0, 0, 0]
        counts[0] += 1
        counts[1] += blocks(len(stored.body))
        counts[2] += events
        counts[3] += dropped
        counts[4] += blocks(len(stored.body), FREE_BLOCK)
        for alert in changed:
            self.changed[(alert.device, alert.rule, alert.key)] = alert
        return changed

    def _malformed(self, device, arrival, refused, dropped, reason):
        """Counts DEVICE's refused message or dropped items into its malformed-messages alert
        of the hour of ARRIVAL (one per device and hour) -> the alerts set."""
        hour = int(arrival // HOUR) * HOUR
        if not self.malformed.holds(device, hour):
            self._restore_malformed(device, hour)
        changed = self.engine.feed_hub_event(self.malformed.record(device, arrival, refused,
                                                                   dropped, reason))
        for alert in changed:
            self.changed[(alert.device, alert.rule, alert.key)] = alert
        return changed

    def _restore_malformed(self, device, hour):
        """Takes up the counts of DEVICE's malformed-messages alert of HOUR as this ingest or
        the store holds it (committed with the positions it goes with: exactly once)."""
        key = hub_events.hour_key(hour)
        for rule in hub_events.rules_by_record(self.engine.rules.rules).get(MALFORMED, ()):
            alert = self.engine.alerts.get((device, rule["id"], key))
            if alert is not None:
                found = alert.first, alert.last, alert.evidence
            else:
                rows = [row for row in self.store.alerts(rule=rule["id"], device_id=device)
                        if row["key"] == key]
                if not rows:
                    continue
                found = rows[0]["first"], rows[0]["last"], rows[0]["evidence"]
            first, last, evidence = found
            if evidence and isinstance(evidence[0], dict):
                self.malformed.restore(device, hour, first, last, evidence[0].get("detail"))
            return

    def _load(self, device, source, partition):
        seen = self.seen.get(device)
        if seen is not None:
            return seen
        row = self.store.device_row(device)
        tags = sorted({tag for pattern, tags in self.tag_rules
                       if fnmatch.fnmatchcase(device, pattern) for tag in tags})
        if row is None:
            seen = _Seen(source, partition, None, 0, 0, tags)
        else:
            if row["state"]:
                try:
                    self.engine.import_device(device, row["state"])
                    self.restored.update(ident for ident in self.engine.alerts
                                         if ident[0] == device)
                except ValueError as exc:
                    self.on_skip("state of %s not used, the rules learn it again: %s"
                                 % (device, exc))
            seen = _Seen(source, partition, row["last_arrival"], row["messages"], row["skipped"],
                         tags)
        if self.tag_rules:
            self.new_tags[device] = tags
        self.seen[device] = seen
        return seen

    def check_silence(self, now=None):
        """Silence over the devices held in memory; a silence extended quietly (its last time
        moves, nothing new to report) is written at the next commit all the same."""
        silence = {rule["id"] for rule in self.engine.rules.rules if rule["kind"] == "silence"}
        before = {ident: alert.last for ident, alert in self.engine.alerts.items()
                  if ident[1] in silence}
        changed = self.engine.check_silence(now)
        for ident, alert in self.engine.alerts.items():
            if ident[1] in silence and before.get(ident) != alert.last:
                self.changed[ident] = alert
        for alert in changed:
            self.changed[(alert.device, alert.rule, alert.key)] = alert
        self.touched.update(ident[0] for ident in self.changed)
        return changed

    # ---- the transaction ----------------------------------------------------------------------

    def commit(self):
        """One transaction: the touched devices' states, the changed alerts, the hourly counts
        and the positions. PositionMoved (a StoreError) when another consumer has taken a
        partition over: nothing is written."""
        batch = Batch()
        for device in sorted(self.touched):
            seen = self.seen[device]
            state = self.engine.devices.get(device)
            exported = self.engine.export_device(device)
            batch.devices.append((device, seen.source, seen.partition,
                                  state.last_time if state else None, seen.last_arrival,
                                  seen.messages, seen.skipped,
                                  json.dumps(exported) if exported else None))
        batch.tags = dict(self.new_tags)
        batch.alerts = list(self.changed.values())
        self._incidents_into(batch)
        for device in self.touched:
            state = self.engine.devices.get(device)
            if state is not None:
                batch.recommendations[device] = [
                    dict(r.as_dict(), first_time=r.first if r.first is not None else state.last_time,
                         last_time=r.last if r.last is not None else state.last_time)
                    for r in recommend.for_device(device, state)]
        batch.hourly = [(device, hour) + tuple(counts)
                        for (device, hour), counts in sorted(self.hourly.items())]
        for where, offset in sorted(self.next.items()):
            if offset is not None and offset != self.stored_next.get(where):
                batch.positions.append(where + (self.stored_next.get(where), offset))
        self.store.write(batch)
        for where, offset in self.next.items():
            self.stored_next[where] = offset
        self.touched.clear()
        self.new_tags.clear()
        self.changed.clear()
        self.hourly.clear()

    def _incidents_into(self, batch):
        """The incidents of each device whose alerts changed, from all of its alerts (held with
        its state), and which incident each of its alerts belongs to."""
        devices = {alert.device for alert in batch.alerts}
        if not devices:
            return
        by_device = {device: [] for device in devices}
        for (device, _, _), alert in self.engine.alerts.items():
            if device in by_device:
                by_device[device].append(alert)
        for device, alerts in by_device.items():
            incidents, membership = correlate(alerts)
            batch.incidents[device] = [dict(i.as_dict(), first_time=i.first, last_time=i.last)
                                       for i in incidents]
            for alert in alerts:
                ident = incident_alert_id(alert)
                batch.memberships[ident] = membership.get(ident)

    def release(self, source, partitions):
        """Forgets the devices that came from SOURCE's PARTITIONS (after a commit: a rebalance
        gave them to another consumer), and those partitions' positions."""
        gone = set(partitions)
        for device in [d for d, seen in self.seen.items()
                       if seen.source == source and seen.partition in gone]:
            self.engine.forget_device(device)
            self.malformed.forget(device)
            del self.seen[device]
            self.touched.discard(device)
        for partition in gone:
            self.next.pop((source, partition), None)
            self.stored_next.pop((source, partition), None)

    def discard(self):
        """Forgets everything not committed and every device held (after PositionMoved: what
        this consumer holds may be stale); states are loaded again as devices come."""
        self.engine = AlertEngine(self.engine.rules)
        self.malformed = MalformedTally()
        for held in (self.seen, self.new_tags, self.changed, self.hourly, self.next,
                     self.stored_next):
            held.clear()
        self.touched.clear()

    def close(self):
        self.store.close()
