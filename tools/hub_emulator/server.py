"""The emulator's MQTT server: IoT Hub's device-facing behaviour on asyncio streams.

One task per connection. Anything a device does that IoT Hub refuses by disconnecting (QoS 2,
another device's topic, a malformed or oversized packet) closes that connection only. Refused
CONNECTs and topics, and a device connecting while its session is open from another address,
are counted in hub.db's hub_events (database.record_hub_event) for the alert rules.

A device's work runs in the event loop, so it is bounded to keep one device from slowing the
others: a message is at most 256 KB and stored with one INSERT; a twin section at most 32 KB
(twin.py), and the time a device's twin requests take in the loop is paced to TWIN_LOOP_SHARE of
it (a device past it waits, its later packets unread, while the others go on). Moving the twin's JSON work to a thread
measured worse: it holds the GIL all the same, and the loop then waits for it to let go.
"""
import asyncio
import collections
import gc
import json
import logging
import os
import signal
import sqlite3
import ssl
import time

from hub_emulator import certs, codec, memory, registry, sas, store, topics, twin
from hub_emulator.codec import ProtocolError
from hub_emulator.database import hub_name, open_db, record_hub_event

log = logging.getLogger("hub_emulator")

STATE_FILE = "hub.json"
CONNECT_DEADLINE = 10         # seconds from accept to CONNACK: TLS handshake and CONNECT together
MAX_PENDING = 64              # unauthenticated connections held at once; more evict the oldest
MAX_MESSAGE_BYTES = 256 * 1024  # IoT Hub refuses (disconnects) larger device-to-cloud messages
TRIM_DELAY = 1.0              # seconds after the last unauthenticated connection ends
KEEPALIVE_CAP = 1767          # IoT Hub's ceiling on 1.5 x the client's keep-alive
WRITE_TIMEOUT = 30            # seconds a client may leave our replies unread
DESIRED_POLL_INTERVAL = 0.1   # seconds between looks for patches queued by `hub set-desired`
TWIN_LOOP_SHARE = 0.1         # of the loop's time one connection's twin requests may take...
TWIN_BURST_S = 0.05           # ...after a burst of this many seconds of them


UNKNOWN_DEVICE = "device is not registered"


class Refused(Exception):
    """Something IoT Hub answers by closing the connection; str() is safe to log."""


class Pace:
    """A bucket of loop time: run(fn) runs FN at once while its caller's earlier runs took at
    most SHARE of the time since (BURST seconds at once), and otherwise sleeps until they do.
    Paced by cost, not count: small twin patches go at once, 32 KB ones about 40 a second."""

    def __init__(self, share, burst):
        self.share, self.burst = share, burst
        self.credit = burst    # seconds of work the caller may take now
        self.last = time.monotonic()

    async def run(self, fn, *args):
        now = time.monotonic()
        self.credit = min(self.burst, self.credit + (now - self.last) * self.share)
        if self.credit < 0:
            await asyncio.sleep(-self.credit / self.share)
            self.credit = 0
        started = time.monotonic()
        try:
            return fn(*args)
        finally:
            self.last = time.monotonic()
            self.credit -= self.last - started


class Session:
    """One authenticated connection: its identity, writer and granted subscriptions."""

    def __init__(self, identity, writer, keepalive, address):
        self.identity = identity
        self.writer = writer
        self.address = address     # the peer's IP address
        self.read_timeout = min(keepalive * 1.5, KEEPALIVE_CAP) if keepalive else KEEPALIVE_CAP
        self.subscriptions = set()
        self.twin_pace = Pace(TWIN_LOOP_SHARE, TWIN_BURST_S)

    async def send(self, packet):
        self.writer.write(packet)
        await asyncio.wait_for(self.writer.drain(), WRITE_TIMEOUT)

    async def deliver(self, topic, payload):
        """Publishes to the device if one of its subscriptions matches (IoT Hub sends nothing unasked)."""
        if any(topics.matches(f, topic) for f in self.subscriptions):
            await self.send(codec.publish(topic, payload))


class Hub:
    """Connections start as plain TCP; TLS begins in handle(), once the connection has a place
    among the MAX_PENDING unauthenticated ones. A TLS handshake holds about half a megabyte, so
    no more than MAX_PENDING half-open connections are held, each for at most CONNECT_DEADLINE
    seconds."""

    def __init__(self, data_dir, max_packet=codec.DEFAULT_MAX_PACKET):
        self.data_dir = data_dir
        self.max_packet = max_packet
        self.db = open_db(data_dir)
        self.hub_name = hub_name(self.db)
        self.sessions = {}
        self.pending = collections.OrderedDict()  # writer -> its handler task, oldest first
        self._evicted_writers = set()
        self.evicted = 0
        self._trim = None
        self.on_stored = lambda: None  # a route's wake-up (route.KafkaRoute.stored)
        self._trusted = set()  # CA PEMs in the TLS context's trust store

    def _admit(self, writer):
        if len(self.pending) >= MAX_PENDING:
            oldest, task = self.pending.popitem(last=False)
            self._evicted_writers.add(oldest)
            task.cancel()
            if not self.evicted:
                log.warning("%d unauthenticated connections: closing the oldest for each new one",
                            MAX_PENDING)
            self.evicted += 1
        self.pending[writer] = asyncio.current_task()
        if self._trim is not None:
            self._trim.cancel()
            self._trim = None

    def _release(self, writer):
        self.pending.pop(writer, None)
        if not self.pending and self._trim is None:
            # Once a burst of connections is over, what they held goes back to the system.
            self._trim = asyncio.get_running_loop().call_later(TRIM_DELAY, self._trimmed)

    def _trimmed(self):
        self._trim = None
        if self.evicted:
            log.warning("%d unauthenticated connections were closed to admit newer ones",
                        self.evicted)
            self.evicted = 0
        gc.collect()  # connections that ended in an exception sit in reference cycles
        memory.return_free_memory()

    async def handle(self, reader, writer, tls_context=None):
        """A connection from accept to close; never lets an error escape into the server."""
        session = None
        peer = "%s:%d" % writer.get_extra_info("peername")[:2]
        address = writer.get_extra_info("peername")[0]
        self._admit(writer)
        try:
            try:
                async with asyncio.timeout(CONNECT_DEADLINE):
                    if tls_context is not None:
                        self.trust_x509_cas(tls_context)
                        await writer.start_tls(tls_context)
                    session = await self._open_session(reader, writer, address)
            except TimeoutError:
                raise Refused("no CONNECT within %d s of connecting" % CONNECT_DEADLINE) from None
            finally:
                self._release(writer)
            if session:
                await self._run_session(session, reader)
        except (ProtocolError, Refused) as exc:
            log.warning("closing %s: %s", session.identity if session else peer, exc)
        except asyncio.TimeoutError:
            log.warning("closing %s: keep-alive or write timeout", session.identity if session else peer)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, OSError):
            pass  # the peer went away mid-packet or mid-handshake: nothing to answer
        except asyncio.CancelledError:
            if writer not in self._evicted_writers:
                raise
            # Closed by _admit to make room: the connection ends here, the server goes on.
            self._evicted_writers.discard(writer)
            asyncio.current_task().uncancel()
        except Exception:
            log.exception("closing %s after an internal error", session.identity if session else peer)
        finally:
            if session and self.sessions.get(session.identity) is session:
                del self.sessions[session.identity]
                log.info("%s disconnected", session.identity)
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 2)
            except (asyncio.TimeoutError, ConnectionError, ssl.SSLError, OSError):
                pass

    def trust_x509_cas(self, context):
        """Adds the CAs enrolled for X.509 devices since the last connection to CONTEXT's trust
        store (OpenSSL then checks a client certificate's chain and validity in the handshake)."""
        for pem in registry.x509_cas(self.db) - self._trusted:
            context.load_verify_locations(cadata=pem)
            self._trusted.add(pem)

    def _record(self, device, kind, address, detail):
        """Counts a hub event; a database that cannot take it costs a warning, not the connection."""
        try:
            record_hub_event(self.db, device, kind, address, detail)
        except sqlite3.Error as exc:
            log.warning("cannot record %s of %r: %s", kind, device, exc)

    async def _open_session(self, reader, writer, address):
        connect = await codec.read_connect(reader, writer, self.max_packet)
        if connect is None:
            return None
        ssl_object = writer.get_extra_info("ssl_object")
        peer_cert = certs.peer_chain(ssl_object)  # the device's certificate and its CAs
        return_code, reason, kind = self._authenticate(connect, peer_cert)
        if return_code != codec.ACCEPTED:
            log.warning("refused %r: %s (CONNACK %d)", connect.client_id, reason, return_code)
            self._record(connect.client_id, kind, address, reason)
            writer.write(codec.connack(return_code))
            await writer.drain()
            return None
        self._release(writer)  # authenticated: no longer one of the pending connections
        identity = connect.client_id
        previous = self.sessions.get(identity)
        if previous:
            log.info("%s connected again: closing its previous connection", identity)
            previous.writer.close()
            if previous.address != address:
                # two places holding the device's credentials, or one device that moved
                # before the hub noticed its old connection was gone
                self._record(identity, "device-connected-twice", address,
                             "connected from %s while its session from %s was open; the older "
                             "session was closed" % (address, previous.address))
        session = self.sessions[identity] = Session(identity, writer, connect.keepalive, address)
        log.info("%s connected (keep-alive %ds)", identity, connect.keepalive)  # logged before the client knows
        await session.send(codec.connack(codec.ACCEPTED))
        return session

    def _authenticate(self, connect, peer_cert=None):
        """(CONNACK return code, reason, hub event kind) for a CONNECT; the reason never contains
        the token."""
        code, reason = self._check_connect(connect, peer_cert)
        if code == codec.ACCEPTED:
            return code, None, None
        if isinstance(reason, sas.TokenRejected):
            return code, str(reason), reason.kind
        if reason == UNKNOWN_DEVICE:
            return code, reason, "unknown-device"
        if isinstance(reason, CertificateRefused):
            return code, str(reason), "refused-certificate"
        return code, reason, "refused-connect"

    def _check_connect(self, connect, peer_cert=None):
        if not connect.client_id:
            return codec.IDENTIFIER_REJECTED, "empty client id"
        x509_credential = registry.x509_credential(self.db, connect.client_id)
        if x509_credential is not None:
            return self._check_x509(connect, peer_cert, *x509_credential)
        if connect.username is None or connect.password is None:
            return codec.BAD_USERNAME_OR_PASSWORD, "no username or no password"
        # username: {hub host}/{client id}/?api-version=...[&DeviceClientType=...]
        host, _, rest = connect.username.partition("/")
        user_identity, separator, _ = rest.partition("/?")
        if not separator or not host or not user_identity:
            return codec.BAD_USERNAME_OR_PASSWORD, "username is not {hub}/{device}/?api-version=..."
        try:
            fields = sas.parse_token(connect.password.decode("utf-8"))
        except UnicodeDecodeError:
            fields = None
        if fields is None:
            return codec.BAD_USERNAME_OR_PASSWORD, "password is not a SharedAccessSignature token"
        if host.lower() != self.hub_name.lower():
            return codec.NOT_AUTHORIZED, "username names hub %r, this is %r" % (host, self.hub_name)
        if user_identity != connect.client_id:
            return codec.NOT_AUTHORIZED, "client id is not the device id %r of the username" % user_identity
        key = registry.device_key(self.db, connect.client_id)
        if key is None:
            return codec.NOT_AUTHORIZED, UNKNOWN_DEVICE
        try:
            sas.verify(fields, self.hub_name, connect.client_id, key)
        except sas.TokenRejected as exc:
            return codec.NOT_AUTHORIZED, exc
        return codec.ACCEPTED, None

    def _check_x509(self, connect, peer_cert, ca_pem, thumbprint):
        host, _, rest = (connect.username or "").partition("/")
        if host.lower() != self.hub_name.lower() or rest.partition("/?")[0] != connect.client_id:
            return codec.NOT_AUTHORIZED, "username is not {this hub}/{device}/?api-version=..."
        reason = certs.check_device_cert(peer_cert, connect.client_id, ca_pem, thumbprint)
        return (codec.NOT_AUTHORIZED, CertificateRefused(reason)) if reason else (codec.ACCEPTED, None)

    async def _run_session(self, session, reader):
        while True:
            packet = await asyncio.wait_for(codec.read_packet(reader, self.max_packet), session.read_timeout)
            if packet is None:
                return
            message = codec.parse(*packet)
            if isinstance(message, codec.Publish):
                await self._on_publish(session, message)
            elif isinstance(message, codec.Subscribe):
                allowed = topics.allowed_filters(session.identity)
                granted = []
                for topic_filter, qos in message.filters:
                    if topic_filter in allowed:
                        session.subscriptions.add(topic_filter)
                        granted.append(min(qos, 1))
                    else:
                        granted.append(codec.SUBACK_FAILURE)
                        self._record(session.identity, "refused-topic", session.address,
                                     "subscribe to %r refused" % topic_filter[:200])
                await session.send(codec.suback(message.packet_id, granted))
                log.info("%s subscribed: %s", session.identity,
                         ", ".join("%s (%s)" % (f, "QoS %d" % g if g != codec.SUBACK_FAILURE else "refused")
                                   for (f, _), g in zip(message.filters, granted)))
            elif isinstance(message, codec.Unsubscribe):
                session.subscriptions.difference_update(message.filters)
                await session.send(codec.unsuback(message.packet_id))
            elif isinstance(message, codec.Pingreq):
                await session.send(codec.pingresp())
            elif isinstance(message, codec.Disconnect):
                return
            elif isinstance(message, codec.Connect):
                raise ProtocolError("second CONNECT on one connection")
            # a Puback acknowledges nothing we track: the emulator delivers at QoS 0

    async def _on_publish(self, session, message):
        identity, topic = session.identity, message.topic
        if message.qos == 2:
            raise Refused("QoS 2 publish (IoT Hub supports QoS 0 and 1 only)")
        prefix = topics.telemetry_prefix(identity)
        twin_reply = None
        if topic.startswith(prefix) or topic == prefix[:-1]:
            if len(message.payload) > MAX_MESSAGE_BYTES:
                raise Refused("message of %d bytes is over IoT Hub's limit of %d"
                              % (len(message.payload), MAX_MESSAGE_BYTES))
            properties = topics.parse_property_bag(topic[len(prefix):])
            store.add(self.db, identity, topic, properties, message.payload)
            self.on_stored()
        elif topics.twin_request(topic):
            twin_reply = await session.twin_pace.run(self._twin_request, identity, topic, message.payload)
        elif not topic.startswith(topics.METHOD_RESPONSES):
            self._record(identity, "refused-topic", session.address,
                         "publish to %r refused: connection closed" % topic[:200])
            raise Refused("publish to %r, a topic %s may not use" % (topic, identity))
        if message.qos == 1:  # only now: the message is committed to disk
            await session.send(codec.puback(message.packet_id))
        if twin_reply:
            await session.deliver(*twin_reply)

    def _twin_request(self, identity, topic, payload):
        """(response topic, body) for a twin GET or reported-properties PATCH."""
        rid = topics.request_id(topic)
        if rid is None:
            raise Refused("twin request without $rid")
        if topics.twin_request(topic) == "GET":
            body = json.dumps(twin.document(self.db, identity)).encode("utf-8")
            return "%s200/?$rid=%s" % (topics.TWIN_RESPONSES, rid), body
        try:
            version = twin.patch_reported(self.db, identity, twin.parse_patch(payload))
        except twin.TwinError as exc:
            log.warning("%s: reported patch rejected: %s", identity, exc)
            return "%s%d/?$rid=%s" % (topics.TWIN_RESPONSES, exc.status, rid), b""
        return "%s204/?$rid=%s&$version=%d" % (topics.TWIN_RESPONSES, rid, version), b""

    async def push_desired(self):
        """Forwards desired patches queued in the database (by `hub set-desired`) to connected devices."""
        last = twin.last_queued_patch(self.db)
        while True:
            await asyncio.sleep(DESIRED_POLL_INTERVAL)
            for row_id, device, version, patch in twin.queued_patches(self.db, last):
                last = row_id
                session = self.sessions.get(device)
                if session:
                    body = json.dumps(dict(patch, **{"$version": version})).encode("utf-8")
                    try:
                        await session.deliver("%s?$version=%d" % (topics.TWIN_DESIRED, version), body)
                    except (asyncio.TimeoutError, ConnectionError, OSError):
                        session.writer.close()


class CertificateRefused(str):
    """The reason an X.509 device's client certificate was refused at CONNECT (a hub event of
    its own: "refused-certificate")."""


def tls_context(data_dir, hub):
    cert, key = certs.ensure(data_dir, hub)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    # X.509 devices present a client certificate; SAS devices send none (Hub.trust_x509_cas).
    context.verify_mode = ssl.CERT_OPTIONAL
    return context


def write_state(data_dir, state):
    """DIR/hub.json: where the running hub listens (written atomically, once listening)."""
    path = os.path.join(data_dir, STATE_FILE)
    with open(path + ".tmp", "w") as out:
        json.dump(state, out)
    os.replace(path + ".tmp", path)


async def serve(data_dir, host="127.0.0.1", port=8883, plain_port=None, max_packet=codec.DEFAULT_MAX_PACKET,
                announce=print, route=None, dps_port=None, dps_host=None):
    """Runs the hub until SIGTERM or SIGINT; calls ANNOUNCE with one line once it listens.
    ROUTE (a started route.KafkaRoute) hears of each stored message and is stopped at the end.
    DPS_PORT: also serve the Device Provisioning Service (hub_emulator.dps) there, over TLS, on
    DPS_HOST (default HOST)."""
    hub = Hub(data_dir, max_packet)
    if route is not None:
        hub.on_stored = route.stored
    memory.map_large_blocks()
    context = tls_context(data_dir, hub.hub_name)
    servers = [await asyncio.start_server(lambda r, w: hub.handle(r, w, context), host, port)]
    if plain_port is not None:
        servers.append(await asyncio.start_server(hub.handle, host, plain_port))
    dps_server = None
    if dps_port is not None:
        from hub_emulator.dps import Dps
        dps = Dps(open_db(data_dir), hub.hub_name)
        dps_server = await asyncio.start_server(lambda r, w: dps.handle(r, w, context), dps_host or host,
                                                dps_port)
        servers.append(dps_server)
    ports = [server.sockets[0].getsockname()[1] for server in servers]
    state = {"hub_name": hub.hub_name, "host": host, "port": ports[0],
             "plain_port": ports[1] if plain_port is not None else None,
             "dps_port": ports[-1] if dps_server else None,
             "ca": os.path.abspath(os.path.join(data_dir, certs.CA_CERT)), "pid": os.getpid()}
    write_state(data_dir, state)
    plain = ", mqtt://%s:%d (plain)" % (host, ports[1]) if plain_port is not None else ""
    if dps_server:
        plain += ", DPS mqtts://%s:%d (ID scope %s)" % (dps_host or host, ports[-1], dps.scope)
    announce("hub %s listening on mqtts://%s:%d (TLS, CA %s)%s; data in %s"
             % (hub.hub_name, host, ports[0], state["ca"], plain, os.path.abspath(data_dir)))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    pusher = asyncio.create_task(hub.push_desired())
    try:
        await stop.wait()
    finally:
        pusher.cancel()
        for server in servers:
            server.close()
        for session in list(hub.sessions.values()):
            session.writer.close()
        os.unlink(os.path.join(data_dir, STATE_FILE))
        if route is not None:
            route.stop()
        hub.db.close()
