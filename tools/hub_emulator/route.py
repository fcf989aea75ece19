"""Routing like IoT Hub: `hub serve --route kafka://BOOTSTRAP/TOPIC` sends every device message
the hub stores on to a Kafka topic (an Event Hubs namespace's Kafka surface, or any Kafka), in
the shape Event Hubs presents a message IoT Hub routed to it to a Kafka consumer
(docs/event-hubs.md): key = device id, value = the body, headers = IoT Hub's system properties
(plain strings for the AMQP message properties, AMQP-encoded for the iothub-* annotations) and
the application properties (AMQP-encoded).

A thread of its own reads hub.db after a cursor and produces; the cursor (a settings row) moves
only past messages whose delivery Kafka confirmed, so a restart routes what was stored but not
delivered (at least once; the producer is idempotent, so a retry inside one run adds no copy).
The MQTT side never waits for Kafka: storing a message only wakes this thread.
"""
import collections
import datetime
import json
import logging
import os
import re
import sqlite3
import struct
import threading
import time
import urllib.parse

from hub_emulator.database import open_db

log = logging.getLogger("hub_emulator")

ROUTE_ENV = "MICROAGENT_HUB_ROUTE"
CONNECTION_STRING_ENV = "MICROAGENT_KAFKA_CONNECTION_STRING"
MAX_IN_FLIGHT = 10000   # messages produced and not yet confirmed; the rest waits in hub.db
READ_BATCH = 500
SAVE_EVERY_S = 0.5      # how often a moved cursor is written to hub.db
IDLE_WAIT_S = 0.2

# The hub's MQTT property bag names of IoT Hub's system properties -> the Kafka header Event
# Hubs gives the AMQP message property (a plain string).
SYSTEM_PROPERTIES = {"$.ct": "content-type", "$.ce": "content-encoding", "$.mid": "message-id",
                     "$.cid": "correlation-id"}
AMQP_NULL = b"\x40"
_ERROR_TIMES = re.compile(r"\(after \d+ms in state \w+\)")   # the same error, said again


class RouteError(Exception):
    """A --route the hub cannot use; str() is one line without a secret."""


def parse_route(url):
    """kafka://HOST:PORT[,HOST:PORT...]/TOPIC -> (bootstrap, topic). Credentials never go in the
    URL (it is argv): they come from $MICROAGENT_KAFKA_CONNECTION_STRING."""
    parts = urllib.parse.urlsplit(url or "")
    if parts.scheme != "kafka" or not parts.netloc or not parts.path.strip("/"):
        raise RouteError("--route: expected kafka://BOOTSTRAP/TOPIC")
    if "@" in parts.netloc:
        raise RouteError("--route: no credentials in the URL (set $%s)" % CONNECTION_STRING_ENV)
    topic = parts.path.strip("/")
    if "/" in topic or len(topic) > 249:
        raise RouteError("--route: %r is not a topic name" % topic[:60])
    return parts.netloc, topic


def producer_settings(bootstrap, environ=os.environ):
    """librdkafka settings: Event Hubs' SASL PLAIN over TLS with the connection string from the
    environment when it is set, else a plain broker."""
    settings = {"bootstrap.servers": bootstrap, "enable.idempotence": True,
                "message.timeout.ms": 0,  # Kafka down: wait for it, never drop
                "linger.ms": 5, "log_level": 0}
    secret = environ.get(CONNECTION_STRING_ENV)
    if secret:
        settings.update({"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN",
                         "sasl.username": "$ConnectionString", "sasl.password": secret})
    return settings


def amqp_string(text):
    """TEXT as an AMQP 1.0 str8-utf8 / str32-utf8 value (type code, length, UTF-8 bytes)."""
    data = text.encode("utf-8")
    if len(data) < 256:
        return b"\xa1" + bytes([len(data)]) + data
    return b"\xb1" + struct.pack(">I", len(data)) + data


def amqp_timestamp(ms):
    """Milliseconds since the epoch as an AMQP 1.0 timestamp (0x83, 64-bit signed)."""
    return b"\x83" + struct.pack(">q", ms)


def _epoch_ms(stored_time):
    stamp = datetime.datetime.fromisoformat(stored_time.replace("Z", "+00:00"))
    return round(stamp.timestamp() * 1000)


def record(message):
    """A stored message (dict of hub_emulator.store.read) -> (key, value, headers, timestamp ms)."""
    device, _, module = message["device"].partition("/")
    enqueued = _epoch_ms(message["time"])
    headers = [("iothub-connection-device-id", amqp_string(device))]
    if module:
        headers.append(("iothub-connection-module-id", amqp_string(module)))
    headers += [("iothub-enqueuedtime", amqp_timestamp(enqueued)),
                ("iothub-message-source", amqp_string("Telemetry"))]
    for name, value in message["properties"].items():
        if name in SYSTEM_PROPERTIES and value is not None:
            headers.append((SYSTEM_PROPERTIES[name], value.encode("utf-8")))
        else:
            headers.append((name, AMQP_NULL if value is None else amqp_string(value)))
    return message["device"].encode("utf-8"), message["payload"], headers, enqueued


class KafkaRoute:
    """Forwards stored messages to TOPIC from a thread; stored() wakes it, stop() ends it."""

    def __init__(self, data_dir, url, environ=os.environ):
        self.bootstrap, self.topic = parse_route(url)
        self.data_dir = data_dir
        self.settings = producer_settings(self.bootstrap, environ)
        self.cursor_name = "route %s" % url  # the URL holds no secret (parse_route)
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="kafka-route", daemon=True)
        self.said = set()        # errors logged since Kafka last confirmed a delivery
        self.delivered = set()   # ids confirmed by Kafka, not yet behind the cursor
        self.rewind = False      # a delivery failed: produce again from the cursor

    def start(self):
        self.thread.start()
        return self

    def stored(self):
        """The hub stored a message (called on the hub's event loop: never blocks)."""
        self.wake.set()

    def stop(self, timeout=5.0):
        self.stopping.set()
        self.wake.set()
        self.thread.join(timeout)

    def _on_error(self, error):
        line = "route to %s: %s" % (self.topic, error.str())
        said = _ERROR_TIMES.sub("", line)
        if len(self.said) > 256:      # errors that differ every time: bounded all the same
            self.said.clear()
        if said not in self.said:  # a broker that stays down says so once, not every retry
            log.warning("%s", line)
            self.said.add(said)

    def _on_delivery(self, row_id, error, _message):
        if error is None:
            self.said.clear()
            self.delivered.add(row_id)
        elif error.retriable():
            self.rewind = True
        else:  # this message can never be delivered (e.g. too large): say so, go on
            log.warning("route to %s: message %d not routed: %s", self.topic, row_id, error.str())
            self.delivered.add(row_id)

    def _producer(self):
        from confluent_kafka import Producer
        return Producer(dict(self.settings, error_cb=self._on_error))

    def _run(self):
        db = open_db(self.data_dir)
        row = db.execute("SELECT value FROM settings WHERE name = ?", (self.cursor_name,)).fetchone()
        cursor = int(row[0]) if row else 0
        saved, saved_at = cursor, 0.0
        producer = self._producer()
        in_flight = collections.deque()
        next_id = cursor
        try:
            while not self.stopping.is_set():
                rows = []
                if self.rewind and len(producer) == 0:
                    in_flight.clear()
                    self.delivered.clear()
                    next_id, self.rewind = cursor, False
                if not self.rewind and len(in_flight) < MAX_IN_FLIGHT:
                    rows = db.execute(
                        "SELECT id, device, time, properties, payload FROM messages WHERE id > ? "
                        "ORDER BY id LIMIT ?", (next_id, READ_BATCH)).fetchall()
                for row_id, device, stored_time, properties, payload in rows:
                    key, value, headers, ms = record(_message(device, stored_time, properties, payload))
                    while True:
                        try:
                            producer.produce(self.topic, value=value, key=key, headers=headers,
                                             timestamp=ms, on_delivery=self._delivery_of(row_id))
                            break
                        except BufferError:  # librdkafka's queue is full: let it drain
                            producer.poll(0.1)
                    in_flight.append(row_id)
                    next_id = row_id
                producer.poll(0 if rows else IDLE_WAIT_S / 4)
                while in_flight and in_flight[0] in self.delivered:
                    cursor = in_flight.popleft()
                    self.delivered.discard(cursor)
                if cursor != saved and time.monotonic() - saved_at >= SAVE_EVERY_S:
                    saved_at = time.monotonic()
                    try:
                        _save_cursor(db, self.cursor_name, cursor)
                        saved = cursor
                    except sqlite3.OperationalError as exc:  # hub.db busy: again in a moment
                        log.warning("route to %s: cursor not saved yet: %s", self.topic, exc)
                if not rows:
                    self.wake.wait(IDLE_WAIT_S)
                    self.wake.clear()
            producer.flush(2)
            while in_flight and in_flight[0] in self.delivered:
                cursor = in_flight.popleft()
            if cursor != saved:
                _save_cursor(db, self.cursor_name, cursor)
        except Exception:
            log.exception("route to %s stopped after an internal error", self.topic)
        finally:
            db.close()

    def _delivery_of(self, row_id):
        return lambda error, message: self._on_delivery(row_id, error, message)


def _message(device, stored_time, properties, payload):
    bag = json.loads(properties)
    return {"device": device, "time": stored_time, "properties": bag if isinstance(bag, dict) else {},
            "payload": bytes(payload)}


def _save_cursor(db, name, cursor):
    db.execute("INSERT OR REPLACE INTO settings (name, value) VALUES (?, ?)", (name, str(cursor)))
