# IoT Hub session for the firmware (docs/spec.md section 6): SAS-authenticated MQTT, security telemetry
# from the outbox, and the module twin that carries the configuration. MicroPython-compatible.
#
# step() is a coroutine: it does a bounded amount of work and yields to the asyncio loop whenever
# it waits for the network (connect, TLS handshake, CONNACK, SUBACK, PUBACK), so the agent runs it
# as a task beside the application without ever stalling the application's loop.
import json
import os

from microagent import mqtt
from microagent.clock import ticks_diff, ticks_ms
from microagent.sas import SasTokenSource, unix_time, url_encode

API_VERSION = "2021-04-12"
# Marks a message as a security message for Defender for IoT; the content type follows the body.
SECURITY_PROPERTIES = "%24.ifid=urn%3Aazureiot%3ASecurity%3ASecurityAgent%3A1"
TWIN_RESPONSES = "$iothub/twin/res/#"
TWIN_DESIRED = "$iothub/twin/PATCH/properties/desired/#"
_TWIN_RESPONSE_PREFIX = b"$iothub/twin/res/"
_TWIN_DESIRED_PREFIX = b"$iothub/twin/PATCH/properties/desired/"


def username(cs):
    """MQTT user name for connection string CS: {hub}/{device}[/{module}]/?api-version=..."""
    return cs.host + "/" + cs.client_id() + "/?api-version=" + API_VERSION


def content_properties(body):
    """IoT Hub's content-type (and content-encoding) system properties for BODY (None: JSON):
    a compact message (microagent.compact) opens with CBOR tag 256, a JSON one with "{"."""
    if body is not None and len(body) > 3 and body[0] == 0xD9:
        return "%24.ct=application%2Fcbor"
    return "%24.ct=application%2Fjson&%24.ce=utf-8"


def telemetry_topic(cs, message_id, body=None):
    """Device-to-cloud topic with the security property bag, the content type of BODY (JSON
    when not given) and $.mid = MESSAGE_ID."""
    if cs.module_id:
        base = "devices/" + cs.device_id + "/modules/" + cs.module_id + "/messages/events/"
    else:
        base = "devices/" + cs.device_id + "/messages/events/"
    return (base + SECURITY_PROPERTIES + "&" + content_properties(body) + "&%24.mid="
            + url_encode(message_id))


def _rid_and_status(topic):
    # $iothub/twin/res/{status}/?$rid={rid}[&$version=...] -> (rid, status); (-1, -1) if malformed.
    rest = topic[len(_TWIN_RESPONSE_PREFIX):]
    slash = rest.find(b"/")
    at = rest.find(b"$rid=")
    if slash < 1 or at < 0:
        return -1, -1
    end = rest.find(b"&", at)
    rid = rest[at + 5:end if end >= 0 else len(rest)]
    status = rest[:slash]
    if not rid.isdigit() or not status.isdigit() or len(rid) > 9 or len(status) > 3:
        return -1, -1
    return int(rid), int(status)


class Twin:
    """The module-twin exchange, independent of the MQTT client (the host transport uses it too).

    request() gives the GET topic to publish after connecting; handle(topic, payload) consumes a
    twin message and returns (topic, body) of the reported-properties PATCH to publish, or None.
    Desired properties go through CONFIG.apply(); ON_CONFIG(applied) hears of changes.
    """

    def __init__(self, config, log=print, on_config=None):
        self.config = config
        self.log = log
        self.on_config = on_config
        self._rid = 0
        self._get_rid = -1
        self._report_rid = -1
        self._reported_rejections = {}
        self.received = False
        self.last_report_status = 0

    def _next_rid(self):
        self._rid = self._rid % 999999 + 1
        return self._rid

    def request(self):
        """Topic of a twin GET (publish it with an empty body)."""
        self._get_rid = self._next_rid()
        return "$iothub/twin/GET/?$rid=%d" % self._get_rid

    def handle(self, topic, payload):
        if topic.startswith(_TWIN_DESIRED_PREFIX):
            return self._apply_desired(payload)
        if not topic.startswith(_TWIN_RESPONSE_PREFIX):
            return None
        rid, status = _rid_and_status(topic)
        if rid < 0:
            return None
        if rid == self._get_rid:
            if status == 200:
                self.received = True
                return self._apply_desired(payload, "desired")
            self.log("hub: twin GET answered with status %d" % status)
        elif rid == self._report_rid:
            self.last_report_status = status
            if status != 204:
                self.log("hub: reported properties refused with status %d" % status)
        return None

    def _apply_desired(self, payload, section=None):
        try:
            document = json.loads(bytes(payload))
            if section is not None:
                document = document.get(section, {})
            if not isinstance(document, dict):
                raise ValueError("not a JSON object")
        except (ValueError, AttributeError) as exc:
            self.log("hub: desired properties ignored: not a JSON object (%s)" % exc)
            return None
        applied, rejected = self.config.apply(document)
        for key in rejected:
            self.log("hub: config %s rejected (%s); the previous value stays" % (key, rejected[key]))
        if applied and self.on_config is not None:
            self.on_config(applied)
        # A patch (no section) names only the keys that changed: a key rejected earlier and
        # not in it still has its bad desired value, so its rejection stays reported.
        return self.report(rejected, document if section is None else None)

    def report(self, rejected, patch=None):
        """(topic, body) reporting the configuration in force and the rejected keys. Keys
        rejected before but not now are reported as null (removed from the twin), unless
        PATCH (the desired patch just applied) is given and leaves them unchanged."""
        cleared = {}
        for key in self._reported_rejections:
            if key in rejected:
                continue
            if patch is not None and key not in patch:
                rejected[key] = self._reported_rejections[key]
            else:
                cleared[key] = None
        cleared.update(rejected)
        self._reported_rejections = dict(rejected)
        body = json.dumps({"config": self.config.as_dict(), "config_rejected": cleared})
        self._report_rid = self._next_rid()
        return ("$iothub/twin/PATCH/properties/reported/?$rid=%d" % self._report_rid, body.encode())


class HubSession:
    """Delivers the OUTBOX's messages to the IoT Hub of connection string CS and keeps CONFIG in
    step with the module twin.

    CA_DER: the CA certificate (DER) the hub's server certificate must chain to; None for plain
    TCP (tests against a local broker only). The connection goes to GatewayHostName when the
    connection string has one. LOG(text) receives one-line status messages, never secrets.
    ON_CONFIG(applied) is called after desired properties changed the configuration.
    OPENER(host, port, ca_der, server_hostname=...) is a coroutine function opening the stream
    (default mqtt.open_connection); CLOCK_S gives Unix seconds for SAS expiry and message age.
    """

    def __init__(self, cs, outbox, config, ca_der=None, port=8883, buf_size=2048, out_size=1024,
                 max_inflight=4,
                 keepalive_s=240, sas_ttl_s=3600, sas_renew_s=300, log=print, on_config=None,
                 clock_s=unix_time, opener=mqtt.open_connection):
        self.cs = cs
        self.outbox = outbox
        self.config = config
        self.ca_der = ca_der
        self.port = port
        self.log = log
        self.twin = Twin(config, log, on_config)
        self._clock_s = clock_s
        self._open = opener
        self.tokens = SasTokenSource(cs.resource(), cs.key, sas_ttl_s, sas_renew_s, clock_s)
        # BUF_SIZE receives (the module twin's documents); OUT_SIZE builds packets: telemetry
        # topics and CONNECT's user name for device and module ids of IoT Hub's 128 characters
        # fit in 1024 bytes, payloads and the SAS token are written from where they are.
        self.client = mqtt.MQTTClient(cs.client_id(), user=username(cs), keepalive_s=keepalive_s,
                                      buf_size=buf_size, max_inflight=max_inflight,
                                      out_size=out_size)
        self.client.on_message = self._on_message
        # Message ids are unique per boot: a random prefix plus the outbox sequence number.
        self.boot_id = "".join("%02x" % b for b in os.urandom(4))
        self.connects = 0
        self.last_error = None
        self._oversized_seen = 0
        self._reply = None  # a twin reply (topic, body) to publish after the current poll

    def __repr__(self):
        return "<HubSession %s via %s:%d>" % (self.cs.client_id(), self.cs.connect_host(), self.port)

    def message_id(self, seq):
        return self.boot_id + "-" + str(seq)

    def send(self, data, now_s=None):
        """Queues one JSON message (bytes) for delivery; returns its outbox sequence number."""
        return self.outbox.put(data, self._clock_s() if now_s is None else now_s)

    async def send_when_room(self, data, timeout_ms):
        """Like send(), but first steps the session until the outbox has room for DATA without
        dropping an older message (for senders that must lose nothing, such as replay). Returns
        the sequence number, or -1 if there was no room within TIMEOUT_MS (nothing queued)."""
        start = ticks_ms()
        while not self.outbox.fits(len(data)):
            if len(data) > self.outbox.max_bytes or ticks_diff(ticks_ms(), start) >= timeout_ms:
                return -1
            if not await self.step(poll_ms=20):
                await mqtt.pause_ms(20)
        return self.send(data)

    # ---- connection -------------------------------------------------------------------------

    async def connect(self):
        """Opens TLS + MQTT with a fresh SAS token, subscribes to the twin topics and asks for
        the twin. Raises mqtt.MQTTError, mqtt.TLSError or OSError."""
        self.client.close()
        host = self.cs.connect_host()
        sock = await self._open(host, self.port, self.ca_der, server_hostname=host)
        await self.client.connect(sock, password=self.tokens.token(),
                                  peer="%s:%d" % (host, self.port), server_hostname=host)
        await self.client.subscribe(TWIN_RESPONSES, 0)
        await self.client.subscribe(TWIN_DESIRED, 0)
        await self.client.publish(self.twin.request(), b"")
        self.outbox.requeue()
        self.outbox.succeeded()
        self.connects += 1

    def connected(self):
        return self.client.connected()

    def close(self):
        self.client.disconnect()
        self.outbox.requeue()

    async def step(self, now_ms=None, poll_ms=0):
        """One bounded round: (re)connect when due, renew the SAS token, publish what the
        inflight window allows, handle incoming packets for up to POLL_MS. Returns True while
        connected. Failures are logged, counted in the outbox backoff, and retried later."""
        if now_ms is None:
            now_ms = ticks_ms()
        self.outbox.expire(self._clock_s(), self.config.message_timeout_s())
        try:
            if self.connected() and self.tokens.due():
                self.log("hub: renewing SAS token, reconnecting")
                self.client.disconnect()
                self.outbox.requeue()
            if not self.connected():
                if not self.outbox.retry_due(now_ms):
                    return False
                await self.connect()
                self.log("hub: connected to %s:%d as %s" % (self.cs.connect_host(), self.port,
                                                            self.cs.client_id()))
            await self._publish_unsent()
            await self.client.poll(poll_ms)
            if self._reply is not None:
                reply = self._reply
                self._reply = None
                await self.client.publish(reply[0], reply[1])
            self.outbox.settle(self.client.pending)
            if self.client.oversized != self._oversized_seen:
                self._oversized_seen = self.client.oversized
                self.log("hub: dropped an incoming message larger than the %d-byte MQTT buffer "
                         "(a twin document? raise the board's buffer size)" % self.client.buf_size)
            return True
        except (mqtt.MQTTError, mqtt.TLSError, OSError) as exc:
            self.client.close()
            self.outbox.requeue()
            delay = self.outbox.failed(now_ms)
            self.last_error = str(exc)
            self.log("hub: %s; retrying in %d ms" % (exc, delay))
            return False

    async def _publish_unsent(self):
        while self.client.inflight_count() < self.client.max_inflight:
            slot = self.outbox.next_unsent()
            if slot < 0:
                return
            payload = self.outbox.payload(slot)
            topic = telemetry_topic(self.cs, self.message_id(self.outbox.seq(slot)), payload)
            pid = await self.client.publish(topic, payload, qos=1)
            self.outbox.mark_sent(slot, pid)

    def _on_message(self, topic, payload):
        # Called inside poll(): the reply goes out once poll() returned.
        reply = self.twin.handle(topic, payload)
        if reply is not None:
            self._reply = reply

    # ---- convenience for one-shot senders (replay) ------------------------------------------

    async def flush(self, timeout_ms):
        """Steps until the outbox is empty or TIMEOUT_MS passed; returns True when all delivered."""
        start = ticks_ms()
        while self.outbox.count:
            if ticks_diff(ticks_ms(), start) >= timeout_ms:
                return False
            if not await self.step(poll_ms=20):
                await mqtt.pause_ms(20)
        return True
