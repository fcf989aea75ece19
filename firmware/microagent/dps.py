# Device Provisioning Service client (MicroPython-compatible; also runs on CPython for the host
# engine): registers the device with a key derived from a group enrollment, or with its X.509
# certificate (TLS client certificate, no password), and returns the hub it was assigned to. Runs once, before the hub session; imported only when provisioning so none
# of it stays in the agent's heap.
#
# DPS over MQTT (learn.microsoft.com/azure/iot/iot-mqtt-connect-to-iot-dps): client id = the
# registration id, user name {idScope}/registrations/{id}/api-version=2019-03-31, password a SAS
# token over {idScope}/registrations/{id} with skn=registration; subscribe to
# $dps/registrations/res/#, PUT iotdps-register, then poll iotdps-get-operationstatus after each
# 202's retry-after until a 200 brings registrationState.assignedHub and deviceId.
import json

from microagent import mqtt
from microagent.sas import b64decode, b64encode, hmac_sha256, sas_token, unix_time, url_encode

API_VERSION = "2019-03-31"
RESPONSES = "$dps/registrations/res/"
REGISTER = "$dps/registrations/PUT/iotdps-register/?$rid="
OPERATION_STATUS = "$dps/registrations/GET/iotdps-get-operationstatus/?$rid="
DEFAULT_PORT = 8883
TOKEN_TTL_S = 3600
_FIELDS = ("GlobalEndpoint", "IdScope", "RegistrationId", "SymmetricKey", "CertFile", "KeyFile")
_REQUIRED = ("GlobalEndpoint", "IdScope", "RegistrationId")
_MAX_ID = 128


class DpsError(Exception):
    """Provisioning failed; one line, never a key."""


class DpsRefused(DpsError):
    """DPS refused the device's credentials: retrying cannot help."""


def derive_key(group_key, registration_id):
    """A group member's key (raw bytes): HMAC-SHA256 of its registration id under the group key."""
    return hmac_sha256(group_key, registration_id.encode())


class DpsSettings:
    """GlobalEndpoint=HOST[:PORT];IdScope=...;RegistrationId=... and SymmetricKey=... or
    CertFile=...;KeyFile=... (the device's X.509 certificate, PEM or DER, and its key) parsed.

    Attributes: host, port, scope, registration_id, key (raw bytes, secret: never shown; None
    for X.509), cert_file and key_file (None for a symmetric key)."""

    def __init__(self, text):
        values = {}
        position = 0
        for part in text.strip().split(";"):
            position += 1
            if not part:
                continue
            name, eq, value = part.partition("=")
            if not eq or name not in _FIELDS:
                # a pasted key parses as a name up to its '=' padding: quote only field-like names
                shown = repr(name) if name.isalpha() and len(name) < 24 else "in part %d" % position
                raise DpsError("DPS settings: unknown field %s (known: %s)"
                               % (shown, ", ".join(_FIELDS)))
            if name in values or not value:
                raise DpsError("DPS settings: %s given twice or empty" % name)
            values[name] = value
        for name in _REQUIRED:
            if name not in values:
                raise DpsError("DPS settings: missing %s" % name)
        x509 = "CertFile" in values or "KeyFile" in values
        if x509 == ("SymmetricKey" in values) or x509 and len(values) != 5:
            raise DpsError("DPS settings: give SymmetricKey, or CertFile and KeyFile")
        host, colon, port = values["GlobalEndpoint"].partition(":")
        if not host or (colon and not (port.isdigit() and 0 < int(port) < 65536)):
            raise DpsError("DPS settings: GlobalEndpoint is not HOST[:PORT]")
        registration_id = values["RegistrationId"]
        for c in registration_id:
            if not (c.isalpha() or c.isdigit() or c in "-._:") or ord(c) > 127:
                raise DpsError("DPS settings: RegistrationId contains %r" % c)
        if len(registration_id) > _MAX_ID:
            raise DpsError("DPS settings: RegistrationId is longer than %d" % _MAX_ID)
        self.key = None
        if not x509:
            try:
                self.key = b64decode(values["SymmetricKey"])
            except ValueError as exc:
                raise DpsError("DPS settings: SymmetricKey is %s" % exc)
        self.cert_file = values.get("CertFile")
        self.key_file = values.get("KeyFile")
        self.host = host
        self.port = int(port) if colon else DEFAULT_PORT
        self.scope = values["IdScope"]
        self.registration_id = registration_id

    def __repr__(self):
        return "<DpsSettings %s:%d scope %s registration %s %s>" % (
            self.host, self.port, self.scope, self.registration_id,
            "CertFile=" + self.cert_file if self.cert_file else "SymmetricKey=***")

    __str__ = __repr__


def username(scope, registration_id):
    return scope + "/registrations/" + registration_id + "/api-version=" + API_VERSION


def token(scope, registration_id, key, expiry):
    """The registration's SAS token (policy name `registration`)."""
    return sas_token(scope + "/registrations/" + registration_id, key, expiry) + "&skn=registration"


def register_topic(rid):
    return REGISTER + str(rid)


def status_topic(rid, operation_id):
    return OPERATION_STATUS + str(rid) + "&operationId=" + url_encode(operation_id)


def register_payload(registration_id):
    return json.dumps({"registrationId": registration_id})


def parse_response(topic):
    """(status, $rid, retry-after seconds or 0) of a response topic
    $dps/registrations/res/{status}/?$rid=R[&retry-after=S]; None for any other topic."""
    if not topic.startswith(RESPONSES):
        return None
    status, _, query = topic[len(RESPONSES):].partition("/?")
    if not status.isdigit():
        return None
    rid = None
    retry = 0
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if name == "$rid":
            rid = value
        elif name == "retry-after" and value.isdigit():
            retry = min(int(value), 60)
    return int(status), rid, retry


def assignment(body):
    """(assigned hub, device id) from a 200 answer's JSON; DpsError for anything else."""
    try:
        answer = json.loads(body)
        state = answer.get("registrationState") or {}
        status = answer.get("status")
    except (ValueError, AttributeError):
        raise DpsError("DPS answered with a body that is not a registration result")
    if status != "assigned":
        raise DpsError("DPS registration %s: %s" % (status, str(state.get("errorMessage", ""))[:200]))
    hub, device = state.get("assignedHub"), state.get("deviceId")
    if not isinstance(hub, str) or not isinstance(device, str) or not hub or not device:
        raise DpsError("DPS answer has no assignedHub or deviceId")
    return hub, device


def error_text(status, body):
    try:
        message = json.loads(body).get("message")
    except (ValueError, AttributeError):
        message = None
    return "DPS answered %d%s" % (status, ": " + str(message)[:200] if message else "")


def connection_string(settings, hub, device_id):
    """The hub connection string of the assignment (the key is the device's DPS key; an X.509
    device connects with the certificate it registered with)."""
    if settings.key is None:
        return "HostName=%s;DeviceId=%s;x509=true" % (hub, device_id)
    return "HostName=%s;DeviceId=%s;SharedAccessKey=%s" % (hub, device_id, b64encode(settings.key))


def cache_text(settings, hub, device_id):
    """What the assignment cache holds: no key, just what DPS answered and for whom."""
    return json.dumps({"GlobalEndpoint": "%s:%d" % (settings.host, settings.port),
                       "IdScope": settings.scope, "RegistrationId": settings.registration_id,
                       "assignedHub": hub, "deviceId": device_id})


def cached(settings, text):
    """(hub, device id) from the cache TEXT when it is for these settings, else None."""
    try:
        entry = json.loads(text)
        if (entry["GlobalEndpoint"] == "%s:%d" % (settings.host, settings.port)
                and entry["IdScope"] == settings.scope
                and entry["RegistrationId"] == settings.registration_id):
            return entry["assignedHub"], entry["deviceId"]
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    return None


async def provision(settings, ca_der, opener=mqtt.open_connection, timeout_ms=60000, log=None,
                    client_cert=None):
    """Registers through DPS; returns (assigned hub, device id). An X.509 device presents
    CLIENT_CERT ((certificate, key) as mqtt.open_connection takes them) and sends no password.
    DpsRefused when the credentials are refused, DpsError, mqtt.MQTTError, mqtt.TLSError or
    OSError otherwise."""
    from microagent.clock import ticks_diff, ticks_ms
    answers = []

    def on_message(topic, payload):
        try:
            answers.append((bytes(topic).decode(), bytes(payload).decode()))
        except UnicodeError:
            pass  # not an answer of ours

    client = mqtt.MQTTClient(settings.registration_id,
                             user=username(settings.scope, settings.registration_id),
                             keepalive_s=60, buf_size=1024, max_inflight=1)
    client.on_message = on_message
    where = "%s:%d" % (settings.host, settings.port)
    if client_cert:
        sock = await opener(settings.host, settings.port, ca_der, server_hostname=settings.host,
                            client_cert=client_cert)
    else:
        sock = await opener(settings.host, settings.port, ca_der, server_hostname=settings.host)
    password = None
    if settings.key is not None:
        password = token(settings.scope, settings.registration_id, settings.key,
                         unix_time() + TOKEN_TTL_S)
    try:
        try:
            await client.connect(sock, password=password, peer=where, server_hostname=settings.host)
        except mqtt.MQTTRefused as exc:
            raise DpsRefused("DPS %s refused registration %s: %s"
                             % (where, settings.registration_id, exc))
        except (mqtt.MQTTError, mqtt.TLSError, OSError) as exc:
            if not client_cert:
                raise
            # TLS 1.3 ends the session of a refused client certificate after the client's side
            # of the handshake, so the refusal shows as the CONNECT going unanswered
            raise DpsRefused("DPS %s refused registration %s before answering (%s): its certificate"
                             " must chain to an enrolled CA and be valid now"
                             % (where, settings.registration_id, exc))
        await client.subscribe(RESPONSES + "#", 0)
        started = ticks_ms()
        rid = 1
        await client.publish(register_topic(rid), register_payload(settings.registration_id))
        while True:
            if ticks_diff(ticks_ms(), started) >= timeout_ms:
                raise DpsError("DPS %s: no assignment within %d ms" % (where, timeout_ms))
            await client.poll(100)
            while answers:
                topic, body = answers.pop(0)
                response = parse_response(topic)
                if response is None or response[1] != str(rid):
                    continue
                status, _, retry_s = response
                if status == 200:
                    return assignment(body)
                if status != 202:
                    if status == 401:
                        raise DpsRefused(error_text(status, body))
                    raise DpsError(error_text(status, body))
                operation = json.loads(body).get("operationId") if body else None
                if not isinstance(operation, str):
                    raise DpsError("DPS answered 202 without an operationId")
                if log:
                    log("DPS: %s assigning; asking again in %d s" % (settings.registration_id, retry_s or 1))
                await mqtt.pause_ms((retry_s or 1) * 1000)
                rid += 1
                await client.publish(status_topic(rid, operation), b"")
    finally:
        client.disconnect()


CACHE_FILE = "microagent_dps.json"  # a board's assignment, so a reboot does not register again


def provision_board(settings, log, cache_path=CACHE_FILE):
    """Fills in the connection string of a board's Settings from its DPS enrollment (cached in
    CACHE_PATH, else registered now); an X.509 board's certificate and key (CertFile, KeyFile on
    its flash, DER) go into settings.client_cert for the hub session too. False after logging why
    the agent cannot run. Unloads this module on the way out: none of the DPS client stays in the
    agent's heap."""
    import gc
    import sys
    try:
        enrollment = DpsSettings(settings.dps)
        client_cert = None
        if enrollment.key is None:
            client_cert = settings.client_cert = (_read(enrollment.cert_file),
                                                  _read(enrollment.key_file))
        settings.connection_string = provision_cached(enrollment, settings.ca_der(), cache_path,
                                                      log, client_cert)
        return True
    except (DpsError, OSError, ValueError) as exc:  # ProfileError is a ValueError
        log("error: %s; the agent is not running" % exc)  # one line, no key
        return False
    finally:
        settings.dps = None
        sys.modules.pop("microagent.dps", None)
        try:
            delattr(sys.modules["microagent"], "dps")
        except (AttributeError, KeyError, TypeError):
            pass
        gc.collect()


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def provision_cached(settings, ca_der, cache_path, log, client_cert=None):
    """The connection string of a board's DPS assignment (SETTINGS: its DpsSettings): the one
    cached in CACHE_PATH, or registered now (presenting CLIENT_CERT when given) and cached there
    (DPS's answer, not the key)."""
    try:
        with open(cache_path) as f:
            assigned = cached(settings, f.read())
    except OSError:
        assigned = None
    if assigned is None:
        try:
            assigned = mqtt.run(provision(settings, ca_der, log=log, client_cert=client_cert))
        except (mqtt.MQTTError, mqtt.TLSError) as exc:
            raise DpsError(str(exc))
        with open(cache_path, "w") as f:
            f.write(cache_text(settings, assigned[0], assigned[1]))
        log("DPS assigned %s to hub %s as %s" % (settings.registration_id, assigned[0], assigned[1]))
    return connection_string(settings, assigned[0], assigned[1])
