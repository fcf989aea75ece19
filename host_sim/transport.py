"""Host transport: paho-mqtt 2.x from the SQLite outbox to IoT Hub or to a plain MQTT broker.

Same semantics as the firmware's microagent.hub, reusing its pieces (SAS tokens, user name,
telemetry topic with the security property bag) rather than copying them, and driven by the same
session policy (microagent.session: when to connect, renew, subscribe, ask for and report the
twin, how long to wait after a failure); this module is its I/O backend on paho:
- IoT Hub mode (a device connection string): TLS, SAS token as password, minted again before
  every (re)connect and renewed before it expires; twin GET on connect, desired properties
  applied with microagent.config and reported back.
- Plain MQTT mode (`mqtts://user:pass@host:port` or `mqtt://...`): the user's own broker with a
  user name and password; same topic layout (the client id stands in for the device id), no twin.

Delivery: every message waits in the SQLite outbox until the broker's PUBACK, so neither a broker
outage nor a restart of the agent loses it; a resend carries the same `$.mid`. Each connection
gets a fresh paho client: what one did not see acknowledged is handed again from the outbox to
the next (the policy's requeue), never resent by paho behind the outbox's back.
"""
import collections
import socket
import ssl
import threading
import time
import urllib.parse

import paho.mqtt.client as paho

from microagent import hub, session
from microagent.clock import ticks_diff
from microagent.config import Config
from microagent.sas import ConnectionString, SasTokenSource, unix_time

_Identity = collections.namedtuple("_Identity", "device_id module_id")
BrokerUrl = collections.namedtuple("BrokerUrl", "tls host port user password")


def parse_broker_url(url):
    """mqtts://[user[:password]@]host[:port] or mqtt://...; ValueError naming the problem.

    The password may be percent-encoded; it never appears in an error message.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError("--broker: not a valid URL (%s)" % str(exc).split(":")[0]) from None
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError("--broker: scheme must be mqtt:// or mqtts://, not %r" % parts.scheme)
    if not parts.hostname:
        raise ValueError("--broker: no host name (expected mqtts://user:pass@host:port)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("--broker: unexpected path or query after host:port")
    tls = parts.scheme == "mqtts"
    user = urllib.parse.unquote(parts.username) if parts.username is not None else None
    password = urllib.parse.unquote(parts.password) if parts.password is not None else None
    return BrokerUrl(tls, parts.hostname, port or (8883 if tls else 1883), user, password)


class Transport:
    """Sends the messages of OUTBOX (host_sim.outbox.SqliteOutbox) with paho-mqtt.

    Give exactly one of CONNECTION_STRING (IoT Hub, or the local emulator via GatewayHostName)
    and BROKER (plain MQTT URL). CA_FILE: PEM file of the CA the server certificate must chain
    to (default: the system's CAs). PORT overrides 8883 / the URL's port. CONFIG
    (microagent.config.Config) receives twin desired properties; ON_CONFIG(applied) hears of
    changes. WINDOW: how many messages may be handed to paho at once. SAS_CLOCK: Unix seconds
    for token expiry. LOG(line): status lines, never secrets. After a failed or lost connection
    the next attempt waits RETRY_MIN_S, doubling up to RETRY_MAX_S.
    """

    def __init__(self, outbox, connection_string=None, broker=None, ca_file=None, port=None,
                 client_id=None, config=None, on_config=None, keepalive_s=60, window=100,
                 cert_file=None, key_file=None,
                 sas_ttl_s=3600, sas_renew_s=300, sas_clock=unix_time, log=print,
                 retry_min_s=1, retry_max_s=60):
        if (connection_string is None) == (broker is None):
            raise ValueError("give either a connection string or a broker URL")
        self.outbox = outbox
        self.log = log
        self.window = window
        self.config = config or Config()
        self.cs = None
        self.tokens = None
        self.twin = None
        self._tls = True
        if connection_string is not None:
            self.cs = ConnectionString(connection_string)
            self.host = self.cs.connect_host()
            self.port = port or 8883
            self.client_id = self.cs.client_id()
            self.identity = self.cs
            user, password = hub.username(self.cs), None
            if self.cs.x509 != bool(cert_file and key_file):
                raise ValueError("an x509=true connection string goes with --cert FILE --key FILE "
                                 "(and a SharedAccessKey one without them)")
            if not self.cs.x509:  # with x509, the client certificate authenticates: no token
                self.tokens = SasTokenSource(self.cs.resource(), self.cs.key, sas_ttl_s,
                                             sas_renew_s, sas_clock)
            self.twin = session.Twin(self.config, log, on_config)
        else:
            url = parse_broker_url(broker)
            self._tls = url.tls
            self.host = url.host
            self.port = port or url.port
            self.client_id = client_id or "microagent-" + socket.gethostname()
            self.identity = _Identity(self.client_id, None)
            user, password = url.user, url.password
        self._user = user
        self._password = password
        self._ca_file = ca_file
        self._client_cert = (cert_file, key_file)
        self._sas_clock = sas_clock
        self.policy = session.Session(self.tokens, self.twin, int(retry_min_s * 1000),
                                      int(retry_max_s * 1000))
        self._keepalive_s = keepalive_s
        try:
            self.client = self._new_client()   # a certificate file problem shows at once
        except ssl.SSLError as exc:
            raise ValueError("client certificate or key: %s" % (exc.reason or exc)) from None
        self._acked = collections.deque()      # paho mids acknowledged (from the driver thread)
        self._seq_by_mid = {}
        self._last_handed = 0
        self._handoff_due = True
        self._running = False
        self._stop = threading.Event()
        self._thread = None
        self._pump_lock = threading.RLock()  # paho may report a loss from inside publish()
        self.connects = 0
        self.last_error = None

    def __repr__(self):
        return "<Transport %s to %s:%d>" % (self.client_id, self.host, self.port)

    def _new_client(self):
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=paho.MQTTv311, clean_session=True,
                             reconnect_on_failure=False)
        if self._user is not None:
            client.username_pw_set(self._user, self._password)
        if self._tls:
            client.tls_set(ca_certs=self._ca_file, certfile=self._client_cert[0],
                           keyfile=self._client_cert[1], cert_reqs=ssl.CERT_REQUIRED,
                           tls_version=ssl.PROTOCOL_TLS_CLIENT)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    # ---- lifecycle ----------------------------------------------------------------------------

    def start(self):
        """Connects (first attempt synchronous, so a certificate or address problem is a clear
        error at once) and starts the network thread, which reconnects as the policy says.

        Raises ValueError for an untrusted server certificate; a broker that is merely down is
        logged and retried in the background.
        """
        try:
            self._do_actions(first=True)
        except ssl.SSLCertVerificationError as exc:
            raise ValueError("TLS to %s:%d: server certificate not trusted (%s)"
                             % (self.host, self.port, exc.verify_message)) from None
        self._running = True
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="transport-" + self.client_id,
                                        daemon=True)
        self._thread.start()

    def close(self):
        """Disconnects and stops the network thread; queued messages stay in the outbox."""
        if self._running:
            self._stop.set()
            self._thread.join()
            self._running = False
            with self._pump_lock:
                self.client.disconnect()
                self.policy.disconnected()
                self._requeue()

    def send(self, body):
        """Queues one message (bytes) in the outbox and hands it on; returns its message id."""
        mid = self.outbox.put(body)
        self.pump()
        return mid

    def pump(self):
        """Frees acknowledged messages and drops expired ones; new messages go to paho from the
        network thread (at most WINDOW unacknowledged at a time) while connected. send() and
        flush() call it."""
        with self._pump_lock:
            self._settle()
            expired = self.outbox.expire()
            if expired:
                self.log("transport: %d message(s) older than IothubModule_MessageTimeout (%d min) dropped"
                         % (expired, self.outbox.timeout_min))
            self._handoff_due = True

    def flush(self, timeout_s=30):
        """Pumps until the outbox is empty; True when everything was acknowledged in time."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.pump()
            if self.outbox.count() == 0:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    # ---- the policy's driver (the network thread) ---------------------------------------------

    def _run(self):
        # The only thread that touches the paho client once started: paho's client (and its
        # TLS socket) is not meant to be written from two threads at once.
        while not self._stop.is_set():
            self._do_actions()
            self._hand_off()
            if self.client.is_connected() or self.client.socket() is not None:
                self.client.loop(timeout=0.05)
            else:
                wait_ms = ticks_diff(self.policy.wake_ms, _now_ms())
                self._stop.wait(min(max(wait_ms, 1), 50) / 1000)

    def _do_actions(self, first=False):
        policy = self.policy
        while True:
            with self._pump_lock:
                action = policy.next_action(_now_ms(), self._sas_clock())
                if action == session.IDLE:
                    return
                if action == session.RENEW:
                    # Unacknowledged messages go again, from the outbox, on the new connection.
                    self.log("transport: renewing SAS token, reconnecting")
                    self.client.disconnect()
                    self._requeue()
                elif action == session.SUBSCRIBE:
                    self.client.subscribe([(topic, 0) for topic in session.TWIN_TOPICS])
                elif action == session.PUBLISH:
                    self.client.publish(policy.topic, policy.payload, qos=0)
            if action == session.CONNECT:
                self._connect(policy.password, first)

    def _connect(self, password, first):
        # Outside the pump lock: a connect may take a while, and send() must not wait for it.
        client = self._new_client()
        if password is not None:
            client.username_pw_set(self._user, password)
        try:
            client.connect(self.host, self.port, keepalive=self._keepalive_s)
        except ssl.SSLCertVerificationError:
            if first:
                raise
            self._lost("server certificate not trusted")
            return
        except (OSError, ssl.SSLError) as exc:
            if first:
                self.last_error = str(exc)
                self.log("transport: cannot reach %s:%d (%s); retrying in the background"
                         % (self.host, self.port, exc))
                self._lost(None)
            else:
                self._lost("connecting to %s:%d failed (%s)" % (self.host, self.port, exc))
            return
        with self._pump_lock:
            self.client = client

    def _hand_off(self):
        with self._pump_lock:
            if self._acked:
                self._settle()
                self._handoff_due = True
            if not self._handoff_due or not self.policy.ready():
                return
            self._handoff_due = False
            room = self.window - len(self._seq_by_mid)
            if room <= 0:
                return
            rows = self.outbox.pending(room, self._last_handed)
            for seq, mid, body in rows:
                info = self.client.publish(hub.telemetry_topic(self.identity, mid, body), body, qos=1)
                if not self.policy.ready():
                    return  # that publish found the connection gone: requeued already
                self._seq_by_mid[info.mid] = seq
                self._last_handed = seq
            self._handoff_due = len(rows) == room  # more may wait

    def _requeue(self):
        # Under the pump lock, after a connection ended: what it acknowledged leaves the outbox,
        # the rest is handed to the next connection.
        self._settle()
        self._seq_by_mid.clear()
        self._last_handed = 0
        self._handoff_due = True

    def _settle(self):
        while self._acked:
            seq = self._seq_by_mid.pop(self._acked.popleft(), None)
            if seq is not None:
                self.outbox.delete(seq)

    def _lost(self, reason):
        with self._pump_lock:
            self._requeue()
            delay = self.policy.connection_lost(_now_ms())
        if reason is not None:
            self.log("transport: %s; retrying in %d ms" % (reason, delay))

    # ---- paho callbacks (inside client.loop(), on the network thread) --------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self.last_error = "broker refused the connection: %s" % reason_code
            self.log("transport: %s" % self.last_error)
            return  # paho closes the connection: _on_disconnect counts the failure
        self.policy.connected()
        self._handoff_due = True
        self.connects += 1
        self.last_error = None
        self.log("transport: connected to %s:%d as %s" % (self.host, self.port, self.client_id))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self._lost("connection lost (%s)" % reason_code)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        if any(code.is_failure for code in reason_codes):
            self.last_error = "broker refused the twin subscriptions"
            client.disconnect()
            self._lost(self.last_error)
        else:
            self.policy.subscribed()
            self._handoff_due = True

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        if client is self.client:
            self._acked.append(mid)

    def _on_message(self, client, userdata, message):
        self.policy.message(message.topic.encode(), message.payload, _now_ms())


def _now_ms():
    return time.monotonic_ns() // 1000000
