"""Runs the rules over a source: a batch over everything stored, or following new messages;
in memory (Evaluation) or into the cloud store (follow_into_store, through an Ingest)."""
import time

from host_sim.cloud.alerts import recommend
from host_sim.cloud.alerts.engine import AlertEngine
from host_sim.cloud.alerts.hub_events import HubEvent, MalformedTally
from host_sim.cloud.alerts.messages import UnreadableMessage, message_time, read_checked


class Evaluation:
    """An AlertEngine fed from StoredMessages (and the hub's HubEvents); unreadable messages are
    skipped and reported once each through ON_SKIP(line). HUB_FACTS() gives what the
    recommendations read from the hub (HubStore.hub_facts), or nothing."""

    def __init__(self, rules, on_skip=None, hub_facts=None):
        self.engine = AlertEngine(rules)
        self.on_skip = on_skip or (lambda line: None)
        self.hub_facts = hub_facts or dict
        self.shown = {}    # recommendation identity -> its dict when last reported
        self.malformed = MalformedTally()   # a device's refused messages and dropped items
        self.messages = 0
        self.skipped = 0

    def feed(self, stored):
        if isinstance(stored, HubEvent):
            return self.engine.feed_hub_event(stored)
        try:
            message, verdict = read_checked(stored.body, stored.properties)
        except UnreadableMessage as exc:
            self.skipped += 1
            where = "message %s" % stored.id if stored.id is not None else "a message"
            self.on_skip("skipped %s of %s: %s" % (where, stored.device, exc))
            return self.engine.feed_hub_event(self.malformed.record(
                stored.device, stored.arrival, 1, 0, str(exc)))
        self.messages += 1
        changed = self.engine.feed(stored.device, stored.properties, message, stored.arrival)
        if verdict.dropped:
            changed += self.engine.feed_hub_event(self.malformed.record(
                stored.device, stored.arrival, 0, verdict.dropped, verdict.reason))
        recommend.observe(self.engine.devices[stored.device], message, len(stored.body),
                          message_time(message, stored.arrival))
        return changed

    def recommendations(self):
        """Every recommendation as of now."""
        return recommend.compute(self.engine, self.hub_facts())

    def changed_recommendations(self):
        """The recommendations that are new or changed since the last call."""
        changed = []
        for item in self.recommendations():
            ident = (item.device, item.rule, item.key)
            record = item.as_dict()
            if self.shown.get(ident) != record:
                self.shown[ident] = record
                changed.append(item)
        return changed

    def batch(self, stored_messages):
        for stored in stored_messages:
            self.feed(stored)
        self.engine.check_silence()
        return self.engine.sorted_alerts()

    def follow(self, stream, on_alerts, silence_every_s=5.0, clock=time.time, on_check=None):
        """Feeds STREAM (StoredMessage, or None when idle) until it ends; ON_ALERTS(list) hears
        every alert raised or updated, silence included (checked on the fleet's clock);
        ON_CHECK() is called after each silence check."""
        next_check = clock() + silence_every_s
        for stored in stream:
            changed = self.feed(stored) if stored is not None else []
            if changed:
                on_alerts(changed)
            now = clock()
            if now >= next_check:
                next_check = now + silence_every_s
                fleet_now = self.engine.fleet_now(now)
                silent = self.engine.check_silence(fleet_now) if fleet_now is not None else []
                if silent:
                    on_alerts(silent)
                advice = self.changed_recommendations()
                if advice:
                    on_alerts(advice)
                if on_check is not None:
                    on_check()


def follow_into_store(ingest, records, on_alerts, commit_every=1000, every_s=5.0,
                      clock=time.time):
    """Feeds RECORDS ((source, partition, offset, StoredMessage), or None when idle) through
    INGEST until they end, committing every COMMIT_EVERY messages and every EVERY_S seconds
    (silence is checked then, on the fleet's clock), and once more at the end. ON_ALERTS(list)
    hears every alert raised or updated."""
    next_check = clock() + every_s
    pending = 0
    try:
        for record in records:
            if record is not None:
                changed = ingest.feed(*record)
                pending += 1
                if changed:
                    on_alerts(changed)
            now = clock()
            if now >= next_check:
                next_check = now + every_s
                fleet_now = ingest.engine.fleet_now(now)
                silent = ingest.check_silence(fleet_now) if fleet_now is not None else []
                if silent:
                    on_alerts(silent)
                pending += len(silent)
                if pending:
                    ingest.commit()
                    pending = 0
            elif pending >= commit_every:
                ingest.commit()
                pending = 0
    finally:
        ingest.commit()
