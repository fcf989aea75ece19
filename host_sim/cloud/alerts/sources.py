"""Where the consumer gets messages: the hub emulator's store (all of it, or following it as
messages arrive) or an MQTT broker the messages are forwarded to. Each yields StoredMessage;
host_sim.cloud.alerts.messages.read_message turns one into a message dict."""
import collections
import hashlib
import json
import os
import queue
import socket
import sqlite3
import ssl
import threading
import time
import urllib.parse

from hub_emulator.database import FILE_NAME
from hub_emulator.topics import parse_property_bag

from host_sim.cloud.alerts import hub_events
from host_sim.cloud.alerts.messages import parse_time

StoredMessage = collections.namedtuple("StoredMessage", "id device arrival properties body")


class SourceError(Exception):
    """The source cannot be read; str() is one line naming it."""


class HubStore:
    """The emulator's SQLite store in DATA_DIR, opened read only (the hub may be writing it)."""

    def __init__(self, data_dir):
        path = os.path.join(data_dir, FILE_NAME)
        if not os.path.isfile(path):
            raise SourceError("%s holds no hub data (no %s)" % (data_dir, FILE_NAME))
        try:
            self.db = sqlite3.connect("file:%s?mode=ro" % urllib.parse.quote(path), uri=True,
                                      timeout=10, check_same_thread=False)
            self.db.execute("SELECT id, device, time, properties, payload FROM messages LIMIT 1")
        except sqlite3.Error as exc:
            raise SourceError("%s is not a hub store (%s)" % (path, exc)) from None
        self.path = path
        self.last_id = 0
        self.last_event_id = 0    # of hub_events: what the hub itself refused or noticed
        self.reported = {}        # device -> (reported $version, reported properties)

    def read_new(self, batch=2000):
        """Messages stored after the last one read, oldest first (a generator)."""
        while True:
            try:
                rows = self.db.execute(
                    "SELECT id, device, time, properties, payload FROM messages WHERE id > ? "
                    "ORDER BY id LIMIT ?", (self.last_id, batch)).fetchall()
            except sqlite3.Error as exc:
                raise SourceError("cannot read %s (%s)" % (self.path, exc)) from None
            if not rows:
                return
            for row_id, device, stored, properties, payload in rows:
                self.last_id = row_id
                try:
                    bag = json.loads(properties)
                except ValueError:
                    bag = {}
                yield StoredMessage(row_id, device, parse_time(stored) or time.time(),
                                    bag if isinstance(bag, dict) else {}, bytes(payload))

    def read_hub_events(self):
        """The hub's records (hub_events.HubEvent) written or updated after the last one read."""
        while True:
            try:
                events = hub_events.read_hub_events(self.db, self.last_event_id)
            except sqlite3.Error as exc:
                raise SourceError("cannot read %s (%s)" % (self.path, exc)) from None
            if not events:
                return
            for event in events:
                self.last_event_id = event.id
                yield event

    def read_all(self):
        """The new messages, then the hub's new records."""
        yield from self.read_new()
        yield from self.read_hub_events()

    def hub_facts(self):
        """What the recommendations read from the hub itself: {"shared_keys": [[device ids
        sharing one primary key]], "reported": {device: its twin's reported properties}}. The
        keys are compared inside SQLite and never read out."""
        facts = {"shared_keys": [], "reported": {}}
        try:
            rows = self.db.execute(
                "SELECT group_concat(id, char(10)) FROM devices GROUP BY primary_key"
                " HAVING COUNT(*) > 1").fetchall()
            facts["shared_keys"] = sorted(sorted(row[0].split("\n")) for row in rows)
            # a twin is read again only when its reported $version moved (followers ask often)
            for device, version in self.db.execute("SELECT device, reported_version FROM twins"):
                held = self.reported.get(device)
                if held is None or held[0] != version:
                    row = self.db.execute("SELECT reported FROM twins WHERE device = ?",
                                          (device,)).fetchone()
                    try:
                        data = json.loads(row[0]) if row else None
                    except ValueError:
                        data = None
                    held = self.reported[device] = (version, data if isinstance(data, dict)
                                                    else None)
                if held[1] is not None:
                    facts["reported"][device] = held[1]
        except sqlite3.Error as exc:
            raise SourceError("cannot read %s (%s)" % (self.path, exc)) from None
        return facts

    def follow(self, stop, poll_s=0.5):
        """Every message and hub record, then each new one as the hub stores it, until STOP (an
        Event) is set; None whenever there is nothing new (so the caller can look at its clock)."""
        while not stop.is_set():
            yield from self.read_all()
            yield None
            stop.wait(poll_s)

    def close(self):
        self.db.close()


def parse_mqtt_url(url):
    """mqtt[s]://[user[:password]@]host[:port] -> dict; SourceError naming the problem (never
    the password)."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        raise SourceError("--broker: not a valid URL") from None
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise SourceError("--broker: expected mqtt[s]://[user:password@]host[:port]")
    tls = parts.scheme == "mqtts"
    return {"tls": tls, "host": parts.hostname, "port": port or (8883 if tls else 1883),
            "user": urllib.parse.unquote(parts.username) if parts.username else None,
            "password": urllib.parse.unquote(parts.password) if parts.password else None}


def default_client_id(topic, user):
    """The follower's MQTT client id when none is given: the same on every start on this machine
    for one broker user and topic, so the broker keeps its session (and queues what arrives
    while it is down) under it. Two followers of one topic on one machine need --client-id."""
    seed = "\n".join((socket.gethostname(), user or "", topic)).encode("utf-8", errors="replace")
    return "microagent-alerts-" + hashlib.sha256(seed).hexdigest()[:12]


class MqttSource:
    """Subscribes to TOPIC (default: every device's telemetry) on a broker the messages are
    forwarded to; each message's device and properties come from its IoT Hub topic
    (devices/{id}/messages/events/{property bag}).

    Nothing is lost across a restart: the session is persistent (a fixed client id, clean
    session off) and subscribed at QoS 1, so the broker queues what arrives while the follower
    is down and delivers it when it returns; a message is acknowledged only once the caller
    has taken it in (asked for the next one), so one that arrived just before a stop comes again."""

    def __init__(self, url, ca_file=None, topic="devices/+/messages/events/#", client_id=None,
                 log=None):
        import paho.mqtt.client as paho
        self.options = parse_mqtt_url(url)
        self.topic = topic
        self.log = log or (lambda line: None)
        self.queue = queue.Queue()
        self.subscribed = threading.Event()
        self.failure = None
        self.session_present = False
        self.client_id = client_id or default_client_id(topic, self.options["user"])
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                  protocol=paho.MQTTv311, clean_session=False, manual_ack=True)
        if self.options["user"] is not None:
            self.client.username_pw_set(self.options["user"], self.options["password"])
        if self.options["tls"]:
            try:
                self.client.tls_set(ca_certs=ca_file, cert_reqs=ssl.CERT_REQUIRED)
            except (OSError, ssl.SSLError) as exc:
                raise SourceError("--ca %s: %s" % (ca_file, exc)) from None
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self.failure = "broker refused the connection: %s" % reason_code
            self.subscribed.set()
            return
        self.session_present = flags.session_present
        client.subscribe(self.topic, qos=1)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        self.log("alerts: subscribed to %s on %s:%d as %s (%s)" % (
            self.topic, self.options["host"], self.options["port"], self.client_id,
            "its session resumed" if self.session_present else "a new session"))
        self.subscribed.set()

    def _on_message(self, client, userdata, msg):
        levels = msg.topic.split("/")
        if len(levels) < 4 or levels[0] != "devices":
            return
        device = levels[1]
        if levels[2] == "modules" and len(levels) > 4:
            device = levels[1] + "/" + levels[3]
        _, _, bag = msg.topic.partition("/messages/events/")
        self.queue.put((msg.mid, msg.qos, StoredMessage(None, device, time.time(),
                                                        parse_property_bag(bag), bytes(msg.payload))))

    def start(self, timeout=30):
        try:
            self.client.connect(self.options["host"], self.options["port"], keepalive=60)
        except (OSError, ssl.SSLError) as exc:
            raise SourceError("cannot connect to %s:%d: %s" % (
                self.options["host"], self.options["port"], exc.strerror or exc)) from None
        self.client.loop_start()
        if not self.subscribed.wait(timeout) or self.failure:
            self.close()
            raise SourceError(self.failure or "no subscription within %d s" % timeout)
        return self

    def follow(self, stop, poll_s=0.5):
        """Each message as it arrives, None when none came for POLL_S, until STOP is set. A
        message is acknowledged to the broker when the caller asks for the next one."""
        while not stop.is_set():
            try:
                mid, qos, message = self.queue.get(timeout=poll_s)
            except queue.Empty:
                yield None
                continue
            yield message
            if qos:
                self.client.ack(mid, qos)

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()
