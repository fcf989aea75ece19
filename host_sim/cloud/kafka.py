"""One member of a Kafka consumer group feeding the alert rules into the store (`microagent
alerts --kafka BOOTSTRAP --topic TOPIC --group GROUP --store DSN`).

The store is the truth: on assignment each partition starts at the position the store holds for
it (the group's committed offset only when the store has none); offsets are committed to Kafka
only after the store transaction that holds what they produced (Ingest.commit). A member killed
outright loses nothing and duplicates nothing: whoever takes its partitions over starts where
its last store commit ended.
"""
import re
import signal
import threading
import time

from host_sim.cloud.alerts.sources import SourceError
from host_sim.cloud.kafka_config import consumer_settings, redactor
from host_sim.cloud.kafka_records import Malformed, read_record
from host_sim.cloud.store.base import PositionMoved

BATCH = 1000            # records asked of librdkafka at once
POLL_S = 0.5
COMMIT_EVERY_S = 1.0
SILENCE_EVERY_S = 5.0
_ERROR_TIMES = re.compile(r"\(after \d+ms in state \w+\)")   # the same error, said again


class KafkaSourceError(SourceError):
    """Kafka said the member cannot go on (a fatal error); str() is one line, no secret."""


class Member:
    """The loop of run_member, with the state its rebalance callbacks share."""

    def __init__(self, consumer, topic, ingest, log, on_alerts):
        self.consumer = consumer
        self.topic = topic
        self.source = "kafka:" + topic
        self.ingest = ingest
        self.log = log
        self.on_alerts = on_alerts
        self.assigned = set()
        self.pending = {}       # partition -> next offset fed and not yet committed
        self.alerts = {}        # identity -> Alert changed since the last commit
        self.fatal = None
        self.said = set()       # errors logged since Kafka last delivered a record

    # ---- callbacks (librdkafka calls them from inside consume/close) -------------------------

    def on_error(self, error):
        if error.fatal():
            self.fatal = error.str()
        line = "kafka: %s" % error.str()
        said = _ERROR_TIMES.sub("", line)
        if len(self.said) > 256:      # errors that differ every time: bounded all the same
            self.said.clear()
        if said not in self.said:       # a broker that stays down is said once, not per retry
            self.log(line)
            self.said.add(said)

    def on_assign(self, consumer, partitions):
        from confluent_kafka import OFFSET_STORED
        numbers = [p.partition for p in partitions]
        positions = self.ingest.positions(self.source, numbers)
        for p in partitions:
            stored = positions.get(p.partition)
            p.offset = stored if stored is not None else OFFSET_STORED
        consumer.assign(partitions)
        self.assigned.update(numbers)
        self.log("kafka: assigned %s partitions %s" % (self.topic, _listed(numbers)))

    def on_revoke(self, consumer, partitions):
        numbers = [p.partition for p in partitions]
        self.commit(seek=False)
        self.ingest.release(self.source, numbers)
        self.assigned.difference_update(numbers)
        for number in numbers:
            self.pending.pop(number, None)
        self.log("kafka: revoked %s partitions %s" % (self.topic, _listed(numbers)))

    # ---- the loop -----------------------------------------------------------------------------

    def feed(self, message):
        partition, offset = message.partition(), message.offset()
        if partition not in self.assigned:
            return          # fetched before a revocation: its new owner reads it
        try:
            stored = read_record(message.key(), message.value(), message.headers(),
                                 message.timestamp(), offset)
        except (Malformed, UnicodeDecodeError) as exc:
            reason = str(exc) if isinstance(exc, Malformed) else "a header name is not UTF-8"
            self.ingest.skip(self.source, partition, offset, reason)
        else:
            for alert in self.ingest.feed(self.source, partition, offset, stored):
                self.alerts[(alert.device, alert.rule, alert.key)] = alert
        self.pending[partition] = offset + 1

    def commit(self, seek=True):
        """The store first, then Kafka's offsets, then the alerts are told. SEEK: after
        PositionMoved, read the partitions still held again from the store's positions."""
        try:
            self.ingest.commit()
        except PositionMoved as exc:
            # Another member has processed some of these partitions: drop what this one holds
            # and start again from the store's positions.
            self.log("kafka: %s; reading again from the stored positions" % exc)
            self.ingest.discard()
            self.pending.clear()
            self.alerts.clear()
            if seek:
                self._seek_to_store()
            return
        if self.pending:
            from confluent_kafka import KafkaException, TopicPartition
            offsets = [TopicPartition(self.topic, p, o) for p, o in sorted(self.pending.items())]
            self.pending.clear()
            try:
                self.consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:
                # The store holds the position; the group's offset is only a hint.
                self.log("kafka: offsets not committed: %s" % exc.args[0].str())
        if self.alerts:
            changed = list(self.alerts.values())
            self.alerts.clear()
            self.on_alerts(changed)

    def _seek_to_store(self):
        from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition
        numbers = sorted(self.assigned)
        positions = self.ingest.positions(self.source, numbers)
        for number in numbers:
            offset = positions.get(number)
            try:
                self.consumer.seek(TopicPartition(
                    self.topic, number, offset if offset is not None else OFFSET_BEGINNING))
            except KafkaException as exc:
                self.log("kafka: partition %d not read again: %s" % (number, exc.args[0].str()))

    def check_silence(self):
        for alert in self.ingest.check_silence():
            self.alerts[(alert.device, alert.rule, alert.key)] = alert
        self.commit()

    def run(self, stop):
        self.consumer.subscribe([self.topic], on_assign=self.on_assign, on_revoke=self.on_revoke)
        committed_at = time.monotonic()
        silence_at = committed_at + SILENCE_EVERY_S
        while not stop.is_set():
            messages = self.consumer.consume(BATCH, POLL_S)
            for message in messages:
                error = message.error()
                if error is None:
                    self.said.clear()
                    self.feed(message)
                else:
                    self.on_error(error)
            if self.fatal:
                raise KafkaSourceError("kafka: fatal error: %s" % self.fatal)
            now = time.monotonic()
            if now >= silence_at:
                silence_at = now + SILENCE_EVERY_S
                self.check_silence()
                committed_at = now
            elif self.pending and (now - committed_at >= COMMIT_EVERY_S or not messages):
                self.commit()
                committed_at = now
        self.commit()


def run_member(bootstrap, topic, group, ingest, log, stop, on_alerts):
    """Runs one member of GROUP on TOPIC until STOP (a threading.Event) is set, then commits and
    leaves the group. LOG(line) hears Kafka's errors and skipped records, one line each;
    ON_ALERTS(list of Alert) hears the alerts raised or changed, after they are stored.
    KafkaSourceError (one line) on a fatal Kafka error; the store's errors are its own."""
    from confluent_kafka import Consumer, KafkaException
    redact = redactor()

    def safe_log(line):
        log(redact(line))
    member = None
    try:
        member = Member(None, topic, ingest, safe_log, on_alerts)
        member.consumer = Consumer(dict(consumer_settings(bootstrap, group),
                                        error_cb=member.on_error))
    except KafkaException as exc:
        raise KafkaSourceError(redact("kafka: %s" % exc.args[0].str())) from None
    # Ctrl-C stops the loop between records, like SIGTERM: what was fed is committed, the
    # group is left cleanly (an interrupt inside a feed would leave half a message in memory).
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    try:
        member.run(stop)
    except KafkaException as exc:
        raise KafkaSourceError(redact("kafka: %s" % exc.args[0].str())) from None
    except KafkaSourceError as exc:
        raise KafkaSourceError(redact(str(exc))) from None
    finally:
        try:
            member.consumer.close()     # leaves the group (on_revoke commits first)
        except (KafkaException, RuntimeError):
            pass
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _listed(numbers):
    return ",".join(str(n) for n in sorted(numbers)) or "(none)"
