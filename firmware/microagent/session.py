# The IoT Hub session policy, without I/O (docs/spec.md section 6), in the spirit of
# azure-sdk-for-c's MQTT-agnostic client: what to subscribe to, when to connect, when to renew
# the SAS token, how long to wait after a failure, and how to ask for, apply and report the
# module twin. It never touches a socket or a clock: a driver tells it what happened (connected,
# subscribed, a message arrived, the connection was lost, the time) and does what next_action()
# returns. Two drivers: microagent.hub on our MQTT client (boards), host_sim.transport on paho.
# MicroPython-compatible; nothing is allocated per telemetry message.
import json

from microagent.clock import ticks_add, ticks_diff

try:
    from micropython import const
except ImportError:  # CPython
    def const(value):
        return value

TWIN_RESPONSES = "$iothub/twin/res/#"
TWIN_DESIRED = "$iothub/twin/PATCH/properties/desired/#"
TWIN_TOPICS = (TWIN_RESPONSES, TWIN_DESIRED)
_TWIN_RESPONSE_PREFIX = b"$iothub/twin/res/"
_TWIN_DESIRED_PREFIX = b"$iothub/twin/PATCH/properties/desired/"

# Actions next_action() returns; the driver does it, then reports the outcome as an event.
IDLE = const(0)       # nothing due; telemetry may flow when ready() (next due at wake_ms)
CONNECT = const(1)    # open the connection, password: the session's password (fresh SAS token)
SUBSCRIBE = const(2)  # subscribe to TWIN_TOPICS at QoS 0, then call subscribed()
PUBLISH = const(3)    # publish payload to topic at QoS 0 (a twin GET or reported PATCH)
RENEW = const(4)      # the SAS token is due: close the connection and requeue unacknowledged
#                       messages; the next action is CONNECT with a fresh token

_DISCONNECTED = const(0)
_CONNECTING = const(1)    # CONNECT issued, awaiting connected() or connection_lost()
_CONNECTED = const(2)     # the twin subscriptions are due
_SUBSCRIBING = const(3)   # SUBSCRIBE issued, awaiting subscribed()
_READY = const(4)

_NO_RID = const(-1)
_MAX_RID = const(999999)
_MAX_SHIFT = const(16)


def retriable(status):
    """True for twin statuses worth asking again: 429 (throttled) and 5xx (server errors)."""
    return status == 429 or status >= 500


def twin_response(topic):
    """(rid, status) of a twin response topic $iothub/twin/res/{status}/?$rid={rid}[&...];
    (-1, -1) when TOPIC (bytes) is not one or is malformed."""
    if not topic.startswith(_TWIN_RESPONSE_PREFIX):
        return -1, -1
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
    """The module-twin documents: desired properties go through CONFIG.apply(), ON_CONFIG(applied)
    hears of changes, and the configuration in force is reported with the keys rejected.
    LOG(text) gets one-line notes. The request ids and retries belong to Session."""

    def __init__(self, config, log=print, on_config=None):
        self.config = config
        self.log = log
        self.on_config = on_config
        self._reported_rejections = {}
        self.received = False
        self.last_report_status = 0

    def apply_desired(self, payload, section=None):
        """Applies a desired document (the twin's SECTION "desired", or a patch when None);
        returns the body of the reported PATCH, or None when PAYLOAD is not a JSON object."""
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
        """Body reporting the configuration in force and the rejected keys. Keys rejected before
        but not now are reported as null (removed from the twin), unless PATCH (the desired
        patch just applied) is given and leaves them unchanged."""
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
        return json.dumps({"config": self.config.as_dict(), "config_rejected": cleared}).encode()


class Session:
    """One IoT Hub (or plain MQTT) session's policy.

    TOKENS (microagent.sas.SasTokenSource) mints the password of each connection; None for a
    plain broker whose password the driver holds. TWIN (Twin) is exchanged after connecting;
    None: no twin (plain broker). After a failed or lost connection the next attempt waits
    RETRY_MIN_MS, doubling per consecutive failure up to RETRY_MAX_MS; a twin request the hub
    answers with a retriable status (429, 5xx) is sent again after the same kind of wait.

    Times: NOW_MS are ticks in ms (microagent.clock), NOW_S Unix seconds (SAS expiry).
    """

    def __init__(self, tokens=None, twin=None, retry_min_ms=1000, retry_max_ms=60000):
        self.tokens = tokens
        self.twin = twin
        self.retry_min_ms = retry_min_ms
        self.retry_max_ms = retry_max_ms
        self.failures = 0           # consecutive failed or lost connections
        self._retry_at = 0
        self._state = _DISCONNECTED
        self.password = None        # for CONNECT
        self.topic = None           # for PUBLISH
        self.payload = None
        self.wake_ms = 0            # when next_action() may have something new (IDLE)
        self._rid = 0
        self._get_rid = _NO_RID
        self._report_rid = _NO_RID
        self._get_due = False
        self._report_body = None    # reported PATCH to (re)send, until the hub took it
        self._report_due = False
        self._twin_failures = 0
        self._twin_retry_at = 0
        self._twin_waiting = False

    # ---- actions ----------------------------------------------------------------------------

    def next_action(self, now_ms, now_s):
        """The one thing to do now (IDLE, CONNECT, SUBSCRIBE, PUBLISH, RENEW); call it again
        after doing it until it returns IDLE."""
        state = self._state
        self.topic = self.payload = None  # the driver published them: let them go
        if state == _DISCONNECTED:
            if self.failures and ticks_diff(now_ms, self._retry_at) < 0:
                self.wake_ms = self._retry_at
                return IDLE
            self._state = _CONNECTING
            if self.tokens is not None:
                self.password = self.tokens.token(now_s)
            return CONNECT
        if state == _CONNECTING:
            return IDLE
        # the token source's renewal time, computed when it minted the token: the check
        # compares, never computes, a 32-bit board's Unix time (a long int there)
        if self.tokens is not None and now_s >= self.tokens.renew_at:
            # IoT Hub closes a connection whose token expires: reconnect with a fresh one first.
            self._state = _DISCONNECTED
            self.failures = 0
            self._forget_requests()
            return RENEW
        if state == _CONNECTED:
            self._state = _SUBSCRIBING
            return SUBSCRIBE
        if state == _SUBSCRIBING:
            return IDLE
        if self._twin_waiting and ticks_diff(now_ms, self._twin_retry_at) >= 0:
            self._twin_waiting = False
        if self._twin_waiting:
            self.wake_ms = self._twin_retry_at
            return IDLE
        if self._get_due:
            self._get_due = False
            self._rid = self._get_rid = self._rid % _MAX_RID + 1
            self.topic = "$iothub/twin/GET/?$rid=%d" % self._get_rid
            self.payload = b""
            return PUBLISH
        if self._report_due:
            self._report_due = False
            self._rid = self._report_rid = self._rid % _MAX_RID + 1
            self.topic = "$iothub/twin/PATCH/properties/reported/?$rid=%d" % self._report_rid
            self.payload = self._report_body
            return PUBLISH
        return IDLE

    def ready(self):
        """True while connected and subscribed: telemetry may be published."""
        return self._state == _READY

    # ---- events -----------------------------------------------------------------------------

    def connected(self):
        """The broker accepted the connection (CONNACK 0)."""
        if self.twin is None:
            self.subscribed()
        else:
            self._state = _CONNECTED

    def subscribed(self):
        """The broker granted the twin subscriptions: the twin is asked for."""
        self._state = _READY
        self.failures = 0
        self._get_due = self.twin is not None

    def disconnected(self):
        """The driver closed the connection itself (not a failure): the next action connects."""
        self._state = _DISCONNECTED
        self._forget_requests()

    def connection_lost(self, now_ms):
        """The connection failed, was refused or dropped; returns the wait in ms before the
        next attempt. Unacknowledged messages must be requeued by the driver."""
        self._state = _DISCONNECTED
        self.failures += 1
        delay = self.retry_min_ms << min(self.failures - 1, _MAX_SHIFT)
        if delay > self.retry_max_ms:
            delay = self.retry_max_ms
        self._retry_at = ticks_add(now_ms, delay)
        self.wake_ms = self._retry_at
        self._forget_requests()
        return delay

    def message(self, topic, payload, now_ms):
        """A message on a twin topic (TOPIC bytes): a GET answer, a PATCH status or a desired
        patch. What to publish in reply comes from next_action()."""
        twin = self.twin
        if twin is None:
            return
        if topic.startswith(_TWIN_DESIRED_PREFIX):
            self._reply(twin.apply_desired(payload))
            return
        rid, status = twin_response(topic)
        if rid < 0:
            return
        if rid == self._get_rid:
            self._get_rid = _NO_RID
            if status == 200:
                twin.received = True
                self._twin_failures = 0
                self._reply(twin.apply_desired(payload, "desired"))
                return
            twin.log("hub: twin GET answered with status %d" % status)
            if retriable(status):
                self._get_due = True
                self._twin_backoff(now_ms)
        elif rid == self._report_rid:
            self._report_rid = _NO_RID
            twin.last_report_status = status
            if status == 200 or status == 204:
                self._twin_failures = 0
                self._report_body = None
                return
            twin.log("hub: reported properties refused with status %d" % status)
            if retriable(status):
                self._report_due = True
                self._twin_backoff(now_ms)
            else:
                self._report_body = None

    def _reply(self, body):
        if body is not None:
            self._report_body = body
            self._report_due = True

    def _forget_requests(self):
        # Requests and replies die with their connection: the next one asks for the whole twin,
        # whose answer is reported in full.
        self._get_rid = self._report_rid = _NO_RID
        self._get_due = self._report_due = self._twin_waiting = False
        self._twin_failures = 0
        self._report_body = None

    def _twin_backoff(self, now_ms):
        delay = self.retry_min_ms << min(self._twin_failures, _MAX_SHIFT)
        if delay > self.retry_max_ms:
            delay = self.retry_max_ms
        self._twin_failures += 1
        self._twin_retry_at = ticks_add(now_ms, delay)
        self._twin_waiting = True
