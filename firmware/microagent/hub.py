# IoT Hub session for the firmware (docs/spec.md section 6): SAS-authenticated MQTT, security telemetry
# from the outbox, and the module twin that carries the configuration. MicroPython-compatible.
# What to do when (connect, renew, subscribe, twin, retry) is microagent.session's policy, shared
# with the host transport; this module is its driver on our MQTT client.
#
# step() is a coroutine: it does a bounded amount of work and yields to the asyncio loop whenever
# it waits for the network (connect, TLS handshake, CONNACK, SUBACK, PUBACK), so the agent runs it
# as a task beside the application without ever stalling the application's loop.
import os

from microagent import mqtt, session
from microagent.clock import ticks_diff, ticks_ms
from microagent.sas import SasTokenSource, unix_time, url_encode

API_VERSION = "2021-04-12"
# Marks a message as a security message for Defender for IoT; the content type follows the body.
SECURITY_PROPERTIES = "%24.ifid=urn%3Aazureiot%3ASecurity%3ASecurityAgent%3A1"


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
                 clock_s=unix_time, opener=mqtt.open_connection, retry_min_ms=1000,
                 retry_max_ms=60000, client_cert=None):
        self.cs = cs
        self.outbox = outbox
        self.config = config
        self.ca_der = ca_der
        self.port = port
        self.log = log
        self.twin = session.Twin(config, log, on_config)
        self._clock_s = clock_s
        self._open = opener
        # x509=true: CLIENT_CERT (certificate, key: see mqtt.open_connection) authenticates
        self.client_cert = client_cert
        self.tokens = None if cs.x509 else SasTokenSource(cs.resource(), cs.key, sas_ttl_s,
                                                          sas_renew_s, clock_s)
        self.policy = session.Session(self.tokens, self.twin, retry_min_ms, retry_max_ms)
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
        self._now_ms = 0

    def __repr__(self):
        return "<HubSession %s via %s:%d>" % (self.cs.client_id(), self.cs.connect_host(), self.port)

    def message_id(self, seq):
        return self.boot_id + "-" + str(seq)

    def send(self, data, now_s=None):
        """Queues one message (bytes, JSON or compact) for delivery; returns its outbox sequence
        number."""
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

    # ---- connection ----------------------------------------------------------------------------

    async def connect(self):
        """Opens TLS + MQTT with a fresh SAS token, subscribes to the twin topics and asks for
        the twin, now (no backoff). Raises mqtt.MQTTError, mqtt.TLSError or OSError; the next
        step() then tries again at once."""
        self.client.close()
        self.policy.disconnected()
        try:
            await self._do_actions(ticks_ms(), self._clock_s())
        except (mqtt.MQTTError, mqtt.TLSError, OSError):
            self.close()
            raise

    async def _connect(self, password):
        # Raises mqtt.MQTTError, mqtt.TLSError or OSError.
        self.client.close()
        host = self.cs.connect_host()
        if self.client_cert:
            sock = await self._open(host, self.port, self.ca_der, server_hostname=host,
                                    client_cert=self.client_cert)
        else:
            sock = await self._open(host, self.port, self.ca_der, server_hostname=host)
        await self.client.connect(sock, password=password, peer="%s:%d" % (host, self.port),
                                  server_hostname=host)

    def connected(self):
        return self.client.connected()

    def close(self):
        self.client.disconnect()
        self.outbox.requeue()
        self.policy.disconnected()

    async def step(self, now_ms=None, poll_ms=0):
        """One bounded round: does what the session policy says is due ((re)connect, renew the
        SAS token, subscribe, twin requests and reports), publishes what the inflight window
        allows, handles incoming packets for up to POLL_MS. Returns True while connected.
        Failures are logged and retried after the policy's backoff."""
        if now_ms is None:
            now_ms = ticks_ms()
        self._now_ms = now_ms
        now_s = self._clock_s()
        self.outbox.expire(now_s, self.config.message_timeout_s())
        policy = self.policy
        try:
            await self._do_actions(now_ms, now_s)
            if not policy.ready():
                return False
            await self._publish_unsent()
            await self.client.poll(poll_ms)
            await self._do_actions(now_ms, now_s)  # a twin reply to what poll() received
            self.outbox.settle(self.client.pending)
            if self.client.oversized != self._oversized_seen:
                self._oversized_seen = self.client.oversized
                self.log("hub: dropped an incoming message larger than the %d-byte MQTT buffer "
                         "(a twin document? raise the board's buffer size)" % self.client.buf_size)
            return True
        except (mqtt.MQTTError, mqtt.TLSError, OSError) as exc:
            self.client.close()
            self.outbox.requeue()
            delay = policy.connection_lost(now_ms)
            self.last_error = str(exc)
            self.log("hub: %s; retrying in %d ms" % (exc, delay))
            return False

    async def _do_actions(self, now_ms, now_s):
        policy = self.policy
        while True:
            action = policy.next_action(now_ms, now_s)
            if action == session.IDLE:
                return
            if action == session.RENEW:
                self.log("hub: renewing SAS token, reconnecting")
                self.client.disconnect()
                self.outbox.requeue()
            elif action == session.CONNECT:
                await self._connect(policy.password)
                policy.connected()
                self.outbox.requeue()
            elif action == session.SUBSCRIBE:
                for topic in session.TWIN_TOPICS:
                    await self.client.subscribe(topic, 0)
                policy.subscribed()
                self.connects += 1
                self.log("hub: connected to %s:%d as %s" % (self.cs.connect_host(), self.port,
                                                            self.cs.client_id()))
            elif action == session.PUBLISH:
                await self.client.publish(policy.topic, policy.payload)

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
        # Called inside poll(): a reply goes out once poll() returned.
        self.policy.message(topic, payload, self._now_ms)

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
