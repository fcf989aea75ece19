"""Host transport: paho-mqtt 2.x from the SQLite outbox to IoT Hub or to a plain MQTT broker.

Same semantics as the firmware's microagent.hub, reusing its pieces (SAS tokens, user name,
telemetry topic with the security property bag, module twin) rather than copying them:
- IoT Hub mode (a device connection string): TLS, SAS token as password, minted again before
  every (re)connect and renewed before it expires; twin GET on connect, desired properties
  applied with microagent.config and reported back.
- Plain MQTT mode (`mqtts://user:pass@host:port` or `mqtt://...`): the user's own broker with a
  user name and password; same topic layout (the client id stands in for the device id), no twin.

Delivery: every message waits in the SQLite outbox until the broker's PUBACK, so neither a broker
outage nor a restart of the agent loses it; a resend carries the same `$.mid`.
"""
import collections
import socket
import ssl
import threading
import time
import urllib.parse

import paho.mqtt.client as paho

from microagent import hub
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
    for token expiry. LOG(line): status lines, never secrets.
    """

    def __init__(self, outbox, connection_string=None, broker=None, ca_file=None, port=None,
                 client_id=None, config=None, on_config=None, keepalive_s=60, window=100,
                 sas_ttl_s=3600, sas_renew_s=300, sas_clock=unix_time, log=print):
        if (connection_string is None) == (broker is None):
            raise ValueError("give either a connection string or a broker URL")
        self.outbox = outbox
        self.log = log
        self.window = window
        self.config = config or Config()
        self.cs = None
        self.tokens = None
        self.twin = None
        tls = True
        if connection_string is not None:
            self.cs = ConnectionString(connection_string)
            self.host = self.cs.connect_host()
            self.port = port or 8883
            self.client_id = self.cs.client_id()
            self.identity = self.cs
            user, password = hub.username(self.cs), None
            self.tokens = SasTokenSource(self.cs.resource(), self.cs.key, sas_ttl_s, sas_renew_s,
                                         sas_clock)
            self.twin = hub.Twin(self.config, log, on_config)
        else:
            url = parse_broker_url(broker)
            tls = url.tls
            self.host = url.host
            self.port = port or url.port
            self.client_id = client_id or "microagent-" + socket.gethostname()
            self.identity = _Identity(self.client_id, None)
            user, password = url.user, url.password
        self._user = user
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                  protocol=paho.MQTTv311, clean_session=True)
        if user is not None:
            self.client.username_pw_set(user, password)
        if tls:
            self.client.tls_set(ca_certs=ca_file, cert_reqs=ssl.CERT_REQUIRED,
                                tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self.client.reconnect_delay_set(min_delay=1, max_delay=60)
        self.client.on_pre_connect = self._on_pre_connect
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self._keepalive_s = keepalive_s
        self._acked = collections.deque()      # paho mids acknowledged (from paho's thread)
        self._seq_by_mid = {}
        self._last_handed = 0
        self._running = False
        self._pump_lock = threading.Lock()
        self.connects = 0
        self.last_error = None

    def __repr__(self):
        return "<Transport %s to %s:%d>" % (self.client_id, self.host, self.port)

    # ---- lifecycle ----------------------------------------------------------------------------

    def start(self):
        """Connects (first attempt synchronous, so a certificate or address problem is a clear
        error at once) and starts paho's network thread, which reconnects on its own.

        Raises ValueError for an untrusted server certificate; a broker that is merely down is
        logged and retried in the background.
        """
        try:
            self.client.connect(self.host, self.port, keepalive=self._keepalive_s)
        except ssl.SSLCertVerificationError as exc:
            raise ValueError("TLS to %s:%d: server certificate not trusted (%s)"
                             % (self.host, self.port, exc.verify_message)) from None
        except (OSError, ssl.SSLError) as exc:
            self.last_error = str(exc)
            self.log("transport: cannot reach %s:%d (%s); retrying in the background"
                     % (self.host, self.port, exc))
            self.client.connect_async(self.host, self.port, keepalive=self._keepalive_s)
        self._running = True
        self.client.loop_start()

    def close(self):
        """Disconnects and stops the network thread; queued messages stay in the outbox."""
        if self._running:
            self.client.disconnect()
            self.client.loop_stop()
            self._running = False

    def send(self, body):
        """Queues one message (bytes) in the outbox and hands it on; returns its message id."""
        mid = self.outbox.put(body)
        self.pump()
        return mid

    def pump(self):
        """Moves work between the outbox and paho: frees acknowledged messages, drops expired
        ones, hands new ones to paho (at most WINDOW at a time), renews the SAS token. Call it regularly; send() and flush() do."""
        with self._pump_lock:
            while self._acked:
                seq = self._seq_by_mid.pop(self._acked.popleft(), None)
                if seq is not None:
                    self.outbox.delete(seq)
            expired = self.outbox.expire()
            if expired:
                self.log("transport: %d message(s) older than IothubModule_MessageTimeout (%d min) dropped"
                         % (expired, self.outbox.timeout_min))
            room = self.window - len(self._seq_by_mid)
            if room > 0:
                for seq, mid, body in self.outbox.pending(room, self._last_handed):
                    info = self.client.publish(hub.telemetry_topic(self.identity, mid, body), body, qos=1)
                    self._seq_by_mid[info.mid] = seq
                    self._last_handed = seq
            if self.tokens is not None and self._running and self.tokens.due():
                self._renew()

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

    def _renew(self):
        # IoT Hub closes a connection whose token expires: reconnect with a fresh one first.
        # Unacknowledged messages stay in paho's queue and are sent again after the reconnect.
        self.log("transport: renewing SAS token, reconnecting")
        self.client.disconnect()
        self.client.loop_stop()
        self.client.connect_async(self.host, self.port, keepalive=self._keepalive_s)
        self.client.loop_start()

    # ---- paho callbacks (paho's network thread) -------------------------------------------

    def _on_pre_connect(self, client, userdata):
        if self.tokens is not None:
            client.username_pw_set(self._user, self.tokens.token())

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self.last_error = "broker refused the connection: %s" % reason_code
            self.log("transport: %s" % self.last_error)
            return
        self.connects += 1
        self.last_error = None
        self.log("transport: connected to %s:%d as %s" % (self.host, self.port, self.client_id))
        if self.twin is not None:
            client.subscribe([(hub.TWIN_RESPONSES, 0), (hub.TWIN_DESIRED, 0)])
            client.publish(self.twin.request(), b"", qos=0)

    def _on_connect_fail(self, client, userdata):
        self.log("transport: connecting to %s:%d failed; retrying" % (self.host, self.port))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self.log("transport: connection lost (%s); reconnecting" % reason_code)

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        self._acked.append(mid)

    def _on_message(self, client, userdata, message):
        if self.twin is None:
            return
        reply = self.twin.handle(message.topic.encode(), message.payload)
        if reply is not None:
            client.publish(reply[0], reply[1], qos=0)
