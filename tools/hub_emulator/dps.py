"""The emulator's Device Provisioning Service: symmetric-key and X.509 enrollment groups and
DPS's MQTT protocol, served beside the hub (`hub serve --dps-port N`, TLS with the hub's certificate).

Protocol (learn.microsoft.com/azure/iot/iot-mqtt-connect-to-iot-dps): CONNECT with client id =
registration id, user name `{idScope}/registrations/{registrationId}/api-version=...`, password a
SAS token over `{idScope}/registrations/{registrationId}` with skn=registration, signed with the
device's key: for a group enrollment, HMAC-SHA256 of the registration id under the group key
(learn.microsoft.com/azure/iot-dps/concepts-symmetric-key-attestation). A device of an X.509
group sends no password: its TLS client certificate, signed by the group's CA with CN = the
registration id, is its credential, and it becomes an X.509 hub device of that CA. The device subscribes
to `$dps/registrations/res/#`, publishes `$dps/registrations/PUT/iotdps-register/?$rid=R` and
is answered `res/202/?$rid=R&retry-after=S` with an operationId; it then polls
`$dps/registrations/GET/iotdps-get-operationstatus/?$rid=R&operationId=O` until `res/200` brings
the registrationState (assignedHub, deviceId, status "assigned").

A token that is not valid for any group, or a certificate whose CN is not the registration id,
gets CONNACK 5 (not authorized), as the hub answers a bad SAS token; a certificate of a CA no group
enrolled fails the TLS handshake (only enrolled CAs are trusted). Each refusal is counted in
hub_events as "dps-registration-refused" (the reason, never the token); a malformed request gets status 400 and a registration for another registration id
than the connection's 401, with DPS's error body (errorCode, trackingId, message, timestampUtc).
"""
import asyncio
import base64
import datetime
import hashlib
import hmac
import json
import logging
import os
import re
import sqlite3
import ssl
import time
import urllib.parse
import uuid

from hub_emulator import certs, codec, registry, sas, topics
from hub_emulator.codec import ProtocolError
from hub_emulator.database import NO_CLIENT_ID, record_hub_event, transaction

log = logging.getLogger("hub_emulator")

SCOPE_SETTING = "dps_id_scope"
API_VERSION = "2019-03-31"
RESPONSES = "$dps/registrations/res/"
RESPONSE_FILTER = RESPONSES + "#"
REGISTER = "$dps/registrations/PUT/iotdps-register/"
OPERATION_STATUS = "$dps/registrations/GET/iotdps-get-operationstatus/"
RETRY_AFTER_S = 1            # what the 202 answers ask the device to wait before polling
CONNECT_DEADLINE = 10        # seconds from accept to CONNACK
IDLE_TIMEOUT = 60            # seconds a registering device may stay silent
MAX_CONNECTIONS = 64         # DPS connections held at once; more are closed at accept
MAX_PACKET = 8 * 1024        # a registration request is a small JSON document
MAX_OPERATIONS = 16          # operations one connection may have open
GROUP_KEY_BYTES = 64         # DPS generates 64-byte symmetric keys

# DPS registration ids: alphanumeric, '-', '.', '_', ':' (case-insensitive), at most 128.
REGISTRATION_ID = re.compile(r"^[A-Za-z0-9\-._:]{1,128}$")


class EnrollmentError(Exception):
    """An enrollment request that cannot be done; one line, never a key."""


def _now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def id_scope(db):
    """This DPS's ID scope (`0ne` and 8 hex digits, as DPS spells them), created on first use."""
    db.execute("INSERT OR IGNORE INTO settings VALUES (?, ?)",
               (SCOPE_SETTING, "0ne" + os.urandom(4).hex().upper()))
    return db.execute("SELECT value FROM settings WHERE name = ?", (SCOPE_SETTING,)).fetchone()[0]


def add_group(db, name):
    """Creates the symmetric-key enrollment group NAME; returns (id scope, group key base64)."""
    if not REGISTRATION_ID.match(name):
        raise EnrollmentError("enrollment group name %r is not valid (1-128 of A-Z a-z 0-9 - . _ :)"
                              % name[:200])
    key = base64.b64encode(os.urandom(GROUP_KEY_BYTES)).decode("ascii")
    scope = id_scope(db)
    with transaction(db):
        if _group_exists(db, name) or db.execute("INSERT OR IGNORE INTO enrollment_groups VALUES (?, ?, ?)",
                                                 (name, key, _now_iso())).rowcount == 0:
            raise EnrollmentError("enrollment group %r already exists" % name)
    return scope, key


def add_x509_group(db, name, ca_pem):
    """Creates the X.509 enrollment group NAME of the CA CA_PEM (PEM text); returns the id scope."""
    if not REGISTRATION_ID.match(name):
        raise EnrollmentError("enrollment group name %r is not valid (1-128 of A-Z a-z 0-9 - . _ :)"
                              % name[:200])
    scope = id_scope(db)
    with transaction(db):
        if _group_exists(db, name):
            raise EnrollmentError("enrollment group %r already exists" % name)
        db.execute("INSERT INTO x509_enrollment_groups VALUES (?, ?, ?)", (name, ca_pem, _now_iso()))
    return scope


def _group_exists(db, name):
    return db.execute("SELECT 1 FROM enrollment_groups WHERE name = ? UNION ALL SELECT 1 FROM"
                      " x509_enrollment_groups WHERE name = ?", (name, name)).fetchone() is not None


def group_cas(db):
    """Every CA (PEM) an X.509 enrollment group enrolled."""
    return {row[0] for row in db.execute("SELECT ca_pem FROM x509_enrollment_groups")}


def authenticate_certificate(db, registration_id, chain):
    """The X.509 enrollment group whose CA signed the client certificate of CHAIN (certs.peer_chain:
    DER, the device's first, then intermediate CAs; empty when none) with CN = REGISTRATION_ID,
    else raises CertificateRejected with a reason safe to log (the last group's, when none fits)."""
    if not chain:
        raise CertificateRejected("no password and no client certificate")
    reason = "client certificate is not signed by the CA of any enrollment group"
    for name, ca_pem in db.execute("SELECT name, ca_pem FROM x509_enrollment_groups ORDER BY name"):
        refusal = certs.check_device_cert(chain, registration_id, ca_pem)
        if refusal is None:
            return name
        reason = refusal
    raise CertificateRejected(reason)


class CertificateRejected(Exception):
    """A client certificate that proves no enrollment; str() is safe to log."""


def derived_key(group_key_b64, registration_id):
    """A group member's key: base64(HMAC-SHA256(group key, registration id))."""
    digest = hmac.new(base64.b64decode(group_key_b64), registration_id.encode("utf-8"),
                      hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def resource(scope, registration_id):
    return "%s/registrations/%s" % (scope, registration_id)


def authenticate(db, scope, registration_id, fields, now=None):
    """The enrollment group whose derived key signed the parsed SAS token FIELDS, else raises
    sas.TokenRejected with a reason safe to log."""
    # The docs ask for skn=registration; Microsoft's Python SDK sends none, and DPS takes both.
    if fields.get("skn", "registration") != "registration":
        raise sas.TokenRejected("token's skn is not 'registration'")
    if int(fields["se"]) <= (time.time() if now is None else now):
        raise sas.TokenRejected("token expired", "expired-sas-token")
    raw_resource = fields["sr"]
    if urllib.parse.unquote(raw_resource).lower() != resource(scope, registration_id).lower():
        raise sas.TokenRejected("token resource is not %s" % resource(scope, registration_id))
    try:
        presented = base64.b64decode(urllib.parse.unquote(fields["sig"]), validate=True)
    except (ValueError, TypeError):
        raise sas.TokenRejected("token signature is not base64", "invalid-sas-signature") from None
    expiry = int(fields["se"])
    for name, group_key in db.execute("SELECT name, primary_key FROM enrollment_groups ORDER BY name"):
        expected = base64.b64decode(sas.signature(derived_key(group_key, registration_id),
                                                  raw_resource, expiry))
        if hmac.compare_digest(presented, expected):
            return name
    raise sas.TokenRejected("token is not signed with a key of any enrollment group",
                            "invalid-sas-signature")


def assign(db, group, registration_id, hub):
    """Registers REGISTRATION_ID of GROUP as hub device of the same id (its key the derived key);
    a registration id registered before keeps its assignment. Returns the registrationState.
    A member of an X.509 group becomes an X.509 device of the group's CA."""
    symmetric = db.execute("SELECT primary_key FROM enrollment_groups WHERE name = ?",
                           (group,)).fetchone()
    if symmetric:
        key, ca_pem = derived_key(symmetric[0], registration_id), None
    else:
        (ca_pem,) = db.execute("SELECT ca_pem FROM x509_enrollment_groups WHERE name = ?",
                               (group,)).fetchone()
        key = None
    now = _now_iso()
    with transaction(db):
        row = db.execute("SELECT device_id, assigned_hub, created FROM registrations"
                         " WHERE registration_id = ?", (registration_id,)).fetchone()
        if row is None:
            if registry.is_registered(db, registration_id):
                same = (hmac.compare_digest(registry.device_key(db, registration_id) or "", key)
                        if key else registry.x509_credential(db, registration_id) == (ca_pem, None))
                if not same:
                    raise EnrollmentError("device %r is registered in the hub with another "
                                          "credential" % registration_id)
            elif key:
                registry.add_device(db, registration_id, key)
            else:
                registry.add_x509_device(db, registration_id, ca_pem)
            row = (registration_id, hub, now)
            db.execute("INSERT INTO registrations VALUES (?, ?, ?, ?, ?, ?)",
                       (registration_id, group, registration_id, hub, now, now))
        else:
            db.execute("UPDATE registrations SET updated = ? WHERE registration_id = ?",
                       (now, registration_id))
    device_id, assigned_hub, created = row
    return {"registrationId": registration_id, "createdDateTimeUtc": created,
            "assignedHub": assigned_hub, "deviceId": device_id, "status": "assigned",
            "substatus": "initialAssignment", "lastUpdatedDateTimeUtc": now,
            "etag": base64.b64encode(hashlib.sha256((device_id + now).encode()).digest()[:9]).decode()}


def error_body(error_code, message):
    return {"errorCode": error_code, "trackingId": str(uuid.uuid4()), "message": message,
            "timestampUtc": _now_iso()}


class Refused(Exception):
    """Something DPS answers by closing the connection; str() is safe to log."""


class Dps:
    """The DPS endpoint: one task per connection, at most MAX_CONNECTIONS at once."""

    def __init__(self, db, hub_name):
        self.db = db
        self.hub_name = hub_name
        self.scope = id_scope(db)
        self.connections = 0
        self._trusted = set()

    def trust_group_cas(self, context):
        """Adds the CAs enrolled since the last connection to CONTEXT's trust store (OpenSSL then
        checks a client certificate's chain and validity in the handshake)."""
        for pem in group_cas(self.db) - self._trusted:
            context.load_verify_locations(cadata=pem)
            self._trusted.add(pem)

    def _record(self, registration_id, address, detail):
        """Counts a refused registration; a database that cannot take it costs a warning."""
        try:
            record_hub_event(self.db, registration_id, "dps-registration-refused", address, detail)
        except sqlite3.Error as exc:
            log.warning("dps: cannot record the refusal of %r: %s", registration_id, exc)

    async def handle(self, reader, writer, tls_context):
        peer = "%s:%d" % writer.get_extra_info("peername")[:2]
        address = writer.get_extra_info("peername")[0]
        if self.connections >= MAX_CONNECTIONS:
            writer.close()
            return
        self.connections += 1
        identity = None
        try:
            async with asyncio.timeout(CONNECT_DEADLINE):
                self.trust_group_cas(tls_context)
                try:
                    await writer.start_tls(tls_context)
                except ssl.SSLCertVerificationError as exc:
                    # the registration id is not known yet: the CONNECT comes after the handshake
                    self._record(NO_CLIENT_ID, address, "client certificate refused in the TLS "
                                 "handshake (no enrolled CA or not valid now): %s" % exc.verify_message)
                    raise
                accepted = await self._connect(reader, writer, address)
            if accepted:
                identity = accepted[0]
                await self._serve(*accepted, reader, writer)
        except (ProtocolError, Refused) as exc:
            log.warning("dps: closing %s: %s", identity or peer, exc)
        except TimeoutError:
            log.warning("dps: closing %s: silent for too long", identity or peer)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, OSError):
            pass  # the peer went away mid-packet or mid-handshake
        except Exception:
            log.exception("dps: closing %s after an internal error", identity or peer)
        finally:
            self.connections -= 1
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 2)
            except (asyncio.TimeoutError, ConnectionError, ssl.SSLError, OSError):
                pass

    async def _connect(self, reader, writer, address):
        """(registration id, enrollment group) of an authenticated CONNECT, or None after
        refusing it."""
        connect = await codec.read_connect(reader, writer, MAX_PACKET)
        if connect is None:
            return None
        ssl_object = writer.get_extra_info("ssl_object")
        code, reason = self._check(connect, certs.peer_chain(ssl_object))
        if code != codec.ACCEPTED:
            log.warning("dps: refused %r: %s (CONNACK %d)", connect.client_id[:200], reason, code)
            self._record(connect.client_id, address, reason)
            writer.write(codec.connack(code))
            await writer.drain()
            return None
        log.info("dps: %s connected (enrollment group %s)", connect.client_id, reason)
        writer.write(codec.connack(codec.ACCEPTED))
        await writer.drain()
        return connect.client_id, reason

    def _check(self, connect, peer_chain):
        """(CONNACK code, reason or the enrollment group's name when accepted)."""
        registration_id = connect.client_id
        if not REGISTRATION_ID.match(registration_id):
            return codec.IDENTIFIER_REJECTED, "client id is not a registration id"
        if connect.username is None:
            return codec.BAD_USERNAME_OR_PASSWORD, "no username"
        parts = connect.username.split("/", 3)
        if len(parts) != 4 or parts[1] != "registrations" or not parts[3].startswith("api-version="):
            return codec.BAD_USERNAME_OR_PASSWORD, \
                "username is not {idScope}/registrations/{registrationId}/api-version=..."
        if parts[0] != self.scope:
            return codec.NOT_AUTHORIZED, "username names ID scope %r, this is %r" % (parts[0][:64], self.scope)
        if parts[2] != registration_id:
            return codec.NOT_AUTHORIZED, "client id is not the registration id of the username"
        if connect.password is None:
            try:
                return codec.ACCEPTED, authenticate_certificate(self.db, registration_id, peer_chain)
            except CertificateRejected as exc:
                return codec.NOT_AUTHORIZED, str(exc)
        try:
            fields = sas.parse_token(connect.password.decode("utf-8"))
        except UnicodeDecodeError:
            fields = None
        if fields is None:
            return codec.BAD_USERNAME_OR_PASSWORD, "password is not a SharedAccessSignature token"
        try:
            return codec.ACCEPTED, authenticate(self.db, self.scope, registration_id, fields)
        except sas.TokenRejected as exc:
            return codec.NOT_AUTHORIZED, str(exc)

    async def _serve(self, identity, group, reader, writer):
        subscribed = False
        operations = {}  # operationId -> registrationState
        while True:
            packet = await asyncio.wait_for(codec.read_packet(reader, MAX_PACKET), IDLE_TIMEOUT)
            if packet is None:
                return
            message = codec.parse(*packet)
            if isinstance(message, codec.Subscribe):
                granted = []
                for topic_filter, qos in message.filters:
                    ok = topic_filter == RESPONSE_FILTER
                    subscribed = subscribed or ok
                    granted.append(min(qos, 1) if ok else codec.SUBACK_FAILURE)
                writer.write(codec.suback(message.packet_id, granted))
            elif isinstance(message, codec.Publish):
                if message.qos == 2:
                    raise Refused("QoS 2 publish (DPS supports QoS 0 and 1 only)")
                if message.qos == 1:
                    writer.write(codec.puback(message.packet_id))
                reply = self._request(identity, group, message, operations)
                if subscribed:
                    writer.write(codec.publish(*reply))
            elif isinstance(message, codec.Pingreq):
                writer.write(codec.pingresp())
            elif isinstance(message, codec.Unsubscribe):
                subscribed = subscribed and RESPONSE_FILTER not in message.filters
                writer.write(codec.unsuback(message.packet_id))
            elif isinstance(message, codec.Disconnect):
                return
            elif isinstance(message, codec.Connect):
                raise ProtocolError("second CONNECT on one connection")
            await asyncio.wait_for(writer.drain(), IDLE_TIMEOUT)

    def _request(self, identity, group, message, operations):
        """(response topic, body) for a registration or operation status request."""
        path, _, query = message.topic.partition("?")
        properties = topics.parse_property_bag(query)
        rid = properties.get("$rid")
        if rid is None or len(rid) > 64:
            raise Refused("request without a $rid")
        if path == REGISTER:
            return self._register(identity, group, message.payload, rid, operations)
        if path == OPERATION_STATUS:
            state = operations.get(properties.get("operationId"))
            if state is None:
                return self._error(rid, 404, 404002, "operation not found")
            body = {"operationId": properties["operationId"], "status": state["status"],
                    "registrationState": state}
            return "%s200/?$rid=%s" % (RESPONSES, rid), json.dumps(body).encode()
        raise Refused("publish to %r, not a DPS request topic" % message.topic[:200])

    def _register(self, identity, group, payload, rid, operations):
        try:
            request = json.loads(bytes(payload).decode("utf-8")) if payload else None
        except (ValueError, RecursionError):
            request = None
        if not isinstance(request, dict) or not isinstance(request.get("registrationId"), str):
            return self._error(rid, 400, 400004, "request body is not {\"registrationId\": ...}")
        if request["registrationId"] != identity:
            return self._error(rid, 401, 401002, "registrationId is not the authenticated one")
        if len(operations) >= MAX_OPERATIONS:
            return self._error(rid, 429, 429001, "too many operations on this connection")
        try:
            state = assign(self.db, group, identity, self.hub_name)
        except EnrollmentError as exc:
            log.warning("dps: %s not assigned: %s", identity, exc)
            state = {"registrationId": identity, "status": "failed", "errorCode": 409201,
                     "errorMessage": str(exc)}
        except sqlite3.Error as exc:
            log.warning("dps: %s not assigned: %s", identity, exc)
            return self._error(rid, 500, 500000, "internal error")
        operation = "4.%s.%s" % (os.urandom(8).hex(), uuid.uuid4())
        operations[operation] = state
        log.info("dps: %s %s to %s", identity, state["status"], state.get("assignedHub", "no hub"))
        body = {"operationId": operation, "status": "assigning"}
        return ("%s202/?$rid=%s&retry-after=%d" % (RESPONSES, rid, RETRY_AFTER_S),
                json.dumps(body).encode())

    def _error(self, rid, status, error_code, message):
        return "%s%d/?$rid=%s" % (RESPONSES, status, rid), json.dumps(
            error_body(error_code, message)).encode()
