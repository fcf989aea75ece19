# A small MQTT 3.1.1 client for the firmware (MicroPython-compatible; also runs on CPython): the
# I/O, keep-alive and QoS 1 tracking. The packets themselves are microagent.mqtt_codec's.
#
# Why not umqtt: the agent needs QoS 1 with PUBACK tracking by packet id (so the outbox knows what
# the broker really has), keep-alive without blocking the application, buffers allocated once, and
# a receive parser that treats every byte from the network as hostile.
#
# It shares the board's asyncio loop with the application, so it never blocks it: the stream is
# non-blocking (MicroPython's readinto/write return None when they would block, and so do the
# "busy" errnos in BUSY_ERRNOS), and every wait -- name lookup, TCP connect, TLS handshake,
# CONNACK, SUBACK, PUBACK, the rest of a packet begun, room to send -- is an await against a
# deadline. A silent or slow broker costs the application nothing but a few polls.
import asyncio
import errno
import socket

from microagent import mqtt_codec as codec
from microagent.clock import ticks_diff, ticks_ms
from microagent.events import parse_ipv4
from microagent.mqtt_codec import MQTTError

try:
    from micropython import const
except ImportError:  # CPython
    def const(value):
        return value

try:
    pause_ms = asyncio.sleep_ms
except AttributeError:  # CPython
    def pause_ms(ms):
        return asyncio.sleep(ms / 1000)

# The types (MQTT 3.1.1, 2.2.1) of the packets poll() handles and returns. What a client sends
# is the codec's.
CONNACK = const(0x20)
PUBLISH = const(0x30)
PUBACK = const(0x40)
SUBACK = const(0x90)
PINGRESP = const(0xD0)

_IDLE_MS = const(10)  # how long a wait sleeps between two looks at the socket
_CONNACK_REASONS = (
    "",
    "unacceptable protocol version",
    "client id rejected",
    "server unavailable",
    "bad user name or password",
    "not authorized",
)

# "Try again later" from a non-blocking socket, as each port spells it: EAGAIN/EWOULDBLOCK
# everywhere; EINPROGRESS/EALREADY while a connect is under way (lwip, Linux); ETIMEDOUT from
# the ESP32 port's socket timeout; ENOBUFS/ENOMEM when lwip is out of buffers (ESP32 and RP2
# under Wi-Fi load). ESP-IDF's newlib numbers differ from Linux's, so both are listed.
BUSY_ERRNOS = tuple({11, 115, 114, 110, 105, 12, 119, 120, 116}
                    | {getattr(errno, name) for name in ("EAGAIN", "EWOULDBLOCK", "EINPROGRESS",
                                                         "EALREADY", "ETIMEDOUT", "ENOBUFS", "ENOMEM")
                       if hasattr(errno, name)})


class MQTTRefused(MQTTError):
    """The broker refused CONNECT; CODE is the CONNACK return code (1..5)."""

    def __init__(self, code):
        super().__init__("broker refused the connection: %s (CONNACK code %d)"
                         % (_CONNACK_REASONS[code] if code < len(_CONNACK_REASONS)
                            else "unknown reason", code))
        self.code = code


class TLSError(Exception):
    """The TLS handshake failed, e.g. the server certificate does not chain to the CA file."""


def pem_to_der(pem):
    """DER bytes of the first certificate in PEM text (bytes or str); ValueError if there is none."""
    if isinstance(pem, str):
        pem = pem.encode()
    begin = pem.find(b"-----BEGIN CERTIFICATE-----")
    end = pem.find(b"-----END CERTIFICATE-----")
    if begin < 0 or end < begin:
        raise ValueError("no PEM certificate (-----BEGIN CERTIFICATE-----) found")
    import binascii
    body = pem[begin + 27:end].replace(b"\r", b"").replace(b"\n", b"")
    return binascii.a2b_base64(body)


def would_block(exc):
    """True when EXC only says a non-blocking socket is not ready yet."""
    # MicroPython reports an errno (BUSY_ERRNOS); CPython's ssl module SSLWantRead/WriteError.
    if exc.args and exc.args[0] in BUSY_ERRNOS:
        return True
    return type(exc).__name__ in ("SSLWantReadError", "SSLWantWriteError", "BlockingIOError")


def tls_error(exc, where, server_hostname):
    """The TLSError for a handshake that failed with EXC (mbedTLS reports a bad chain as
    ValueError("The certificate is not correctly signed by the trusted CA"), CPython as
    SSLCertVerificationError)."""
    reason = str(exc).strip()
    upper = reason.upper()
    if "VERIF" in upper or "CERTIFICATE" in upper:
        return TLSError("TLS to %s: server certificate not trusted: it does not chain to the "
                        "given CA certificate or does not match host name %s (%s)"
                        % (where, server_hostname, reason))
    return TLSError("TLS handshake with %s failed: %s" % (where, reason))


def run(coroutine):
    """Runs COROUTINE to its end from code that is not itself on an asyncio loop (replay, tools,
    tests); the agent awaits the coroutines instead."""
    return asyncio.run(coroutine)


async def _writable(sock, where, deadline_ms, started):
    # Waits, yielding, until the non-blocking connect of SOCK finished; OSError when it failed.
    import select  # here, once a connection: a name less in the module's dictionary on a board
    poller = select.poll()
    poller.register(sock, select.POLLOUT)
    while True:
        for entry in poller.poll(0):
            if entry[1] & (select.POLLERR | select.POLLHUP):
                raise OSError("connection to %s refused or unreachable" % where)
            if entry[1] & select.POLLOUT:
                return
        if ticks_diff(ticks_ms(), started) >= deadline_ms:
            raise OSError("no TCP connection to %s within %d ms" % (where, deadline_ms))
        await pause_ms(_IDLE_MS)


async def open_connection(host, port, ca_der=None, server_hostname=None, timeout_ms=15000,
                          client_cert=None):
    """A connected non-blocking stream to HOST:PORT; TLS verified against the CA certificate
    CA_DER when given, presenting the client certificate CLIENT_CERT when given: (certificate,
    key) as this port's load_cert_chain takes them (DER bytes on MicroPython, files on CPython). Every wait (name lookup, connect, handshake) yields to the asyncio loop.

    The server certificate must chain to CA_DER and match SERVER_HOSTNAME (default HOST). On
    CPython the handshake is done here and a failure raises TLSError; MicroPython's TLS sockets
    do it within the first write, so MQTTClient.connect raises the TLSError there. Returns an
    object with readinto/write/setblocking/close.
    """
    started = ticks_ms()
    where = "%s:%d" % (host, port)
    if host == "localhost" or parse_ipv4(host, [0, 0], 0):  # no name lookup needed
        address = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0][-1]
    else:
        from microagent.resolve import resolve
        address = await resolve(host, port, timeout_ms)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        try:
            sock.connect(address)
        except OSError as exc:
            if not would_block(exc):
                raise
        await _writable(sock, where, timeout_ms, started)
        if ca_der is not None:
            import ssl
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cadata=ca_der)
            if client_cert:  # an X.509 device's certificate and key, as load_cert_chain takes them
                context.load_cert_chain(client_cert[0], client_cert[1])
            name = server_hostname or host
            try:
                sock = context.wrap_socket(sock, server_hostname=name,
                                           do_handshake_on_connect=False)
            except (OSError, ValueError) as exc:
                raise tls_error(exc, where, name)
            if hasattr(sock, "do_handshake"):  # CPython
                await _handshake(sock, where, name, timeout_ms, started)
    except BaseException:
        sock.close()
        raise
    if not hasattr(sock, "readinto"):  # CPython: give it MicroPython's stream methods
        from microagent.cpython_stream import CPythonStream
        sock = CPythonStream(sock)
    return sock


async def _handshake(sock, where, name, timeout_ms, started):
    while True:
        try:
            sock.do_handshake()
            return
        except OSError as exc:
            if not would_block(exc):
                raise tls_error(exc, where, name)
        if ticks_diff(ticks_ms(), started) >= timeout_ms:
            raise TLSError("TLS handshake with %s: no answer within %d ms" % (where, timeout_ms))
        await pause_ms(_IDLE_MS)


class MQTTClient:
    """MQTT 3.1.1 client, QoS 0 and 1, over a stream from open_connection().

    Two buffers are allocated here and never again: BUF_SIZE bytes to receive (an incoming PUBLISH
    larger than that is acknowledged and dropped, counted in .oversized) and OUT_SIZE (default
    BUF_SIZE) to build packets: a publish payload or CONNECT password that does not fit after
    its header is written from the caller's memory right after it, so OUT_SIZE only needs the
    longest topic or CONNECT header (client id and user name). At most MAX_INFLIGHT QoS 1
    messages may await their PUBACK. CLOCK returns ms ticks.

    Every method that waits for the network is a coroutine that yields to the asyncio loop while
    it waits (for CONNACK, SUBACK, a packet's remaining bytes, room in the socket's send buffer)
    and gives up after TIMEOUT_MS.
    """

    def __init__(self, client_id, user=None, keepalive_s=60, buf_size=2048, max_inflight=8,
                 timeout_ms=10000, clock=ticks_ms, out_size=0):
        if not 0 <= keepalive_s <= 65535:
            raise ValueError("keepalive_s must be 0..65535")
        self.client_id = client_id
        self.user = user
        self.keepalive_ms = keepalive_s * 1000
        self.timeout_ms = timeout_ms
        self.max_inflight = max_inflight
        self.buf_size = buf_size
        self._clock = clock
        self._out = bytearray(out_size or buf_size)
        self._outv = memoryview(self._out)
        self._in = bytearray(buf_size)
        self._inv = memoryview(self._in)
        self._first = self._inv[0:1]  # where an incoming packet's first byte goes
        self._ack = bytearray(4)
        self._inflight = [0] * max_inflight
        self._next_pid = 0
        self._sock = None
        self._accepted = False  # CONNACK accepted the connection on _sock
        self._last_tx = 0
        self._ping_sent = None
        self._suback_pid = 0
        self._suback_code = 0
        self.on_message = None
        self.oversized = 0
        self.unknown_acks = 0

    def __repr__(self):
        return "<MQTTClient %s %s>" % (self.client_id, "connected" if self._sock else "closed")

    # ---- connection -------------------------------------------------------------------------

    async def connect(self, sock, password=None, clean_session=True, peer="the broker",
                      server_hostname=None):
        """Sends CONNECT on SOCK and waits for CONNACK; returns the session-present flag.

        PASSWORD (e.g. a SAS token) is used for this CONNECT only and never kept. On a
        MicroPython TLS stream the handshake happens during the CONNECT write: a failure there
        raises TLSError naming PEER and SERVER_HOSTNAME.
        """
        self.close()
        self._sock = sock
        sock.setblocking(False)
        for i in range(self.max_inflight):
            self._inflight[i] = 0
        if clean_session:  # a new session: no packet id is in use any more
            self._next_pid = 0
        self._ping_sent = None
        try:
            secret = password.encode() if isinstance(password, str) else password
            end = codec.connect(self._out, self.client_id, self.keepalive_ms // 1000,
                                clean_session, self.user, secret)
            try:
                await self._send(end, secret)
            except ValueError as exc:  # mbedTLS's handshake errors
                raise tls_error(exc, peer, server_hostname or peer)
            start = ticks_ms()
            while True:
                kind = await self._read_packet()
                if kind == CONNACK:
                    break
                if kind:
                    raise MQTTError("expected CONNACK, got packet type 0x%02x" % kind)
                if ticks_diff(ticks_ms(), start) >= self.timeout_ms:
                    raise MQTTError("no CONNACK within %d ms" % self.timeout_ms)
                await pause_ms(_IDLE_MS)
            code = self._in[1]
            if code:
                raise MQTTRefused(code)
            self._accepted = True
            return bool(self._in[0] & 1)
        except BaseException:
            self.close()
            raise

    def connected(self):
        """True once the broker accepted the connection, until it closes."""
        return self._accepted and self._sock is not None

    def disconnect(self):
        """Sends DISCONNECT if the socket takes it at once (never waits) and closes the stream."""
        if self._sock is not None:
            try:
                self._sock.write(codec.DISCONNECT_PACKET)
            except (OSError, ValueError):
                pass
        self.close()

    def close(self):
        """Closes the stream without DISCONNECT (the broker then sends any will)."""
        sock = self._sock
        self._sock = None
        self._accepted = False
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    # ---- sending ----------------------------------------------------------------------------

    async def publish(self, topic, payload, qos=0, retain=False, dup=False):
        """Publishes PAYLOAD (bytes-like) to TOPIC (str); returns the packet id (0 for QoS 0).

        For QoS 1, pending(pid) stays True until the broker's PUBACK arrives in poll().
        """
        if qos not in (0, 1):
            raise ValueError("QoS %r not supported (0 or 1; IoT Hub refuses QoS 2)" % (qos,))
        self._require_connection()
        if isinstance(payload, str):
            payload = payload.encode()
        pid = 0
        if qos:
            if 0 not in self._inflight:
                raise MQTTError("%d QoS 1 messages already await PUBACK" % self.max_inflight)
            slot = self._inflight.index(0)
            pid = self._new_pid()
        await self._send(codec.publish(self._out, topic, qos, pid, retain, dup, payload), payload)
        if qos:
            self._inflight[slot] = pid
        return pid

    async def subscribe(self, topic, qos=0):
        """Subscribes to TOPIC and waits for SUBACK; returns the granted QoS."""
        if qos not in (0, 1):
            raise ValueError("QoS %r not supported (0 or 1)" % (qos,))
        self._require_connection()
        pid = self._new_pid()
        end = codec.subscribe(self._out, pid, topic, qos)
        self._suback_pid = 0
        await self._send(end, None)
        start = ticks_ms()
        while self._suback_pid != pid:
            remaining = self.timeout_ms - ticks_diff(ticks_ms(), start)
            if remaining <= 0:
                raise MQTTError("no SUBACK for %s within %d ms" % (topic, self.timeout_ms))
            await self.poll(remaining)
        if self._suback_code == 0x80:
            raise MQTTError("broker refused the subscription to %s" % topic)
        return self._suback_code

    async def ping(self):
        self._require_connection()
        await self._write_all(codec.PINGREQ_PACKET)
        if self._ping_sent is None:
            self._ping_sent = self._clock()

    # ---- receiving --------------------------------------------------------------------------

    async def poll(self, timeout_ms=0):
        """Keeps the connection alive and handles at most one incoming packet.

        Waits (yielding) up to TIMEOUT_MS for one; returns its type (e.g. PUBACK) or 0 when none
        came. Incoming PUBLISH packets go to on_message(topic_bytes, payload_memoryview); the
        memoryview is only valid during the call.
        """
        self._require_connection()
        start = ticks_ms()
        while True:
            await self._keep_alive()
            kind = await self._read_packet()
            if kind or ticks_diff(ticks_ms(), start) >= timeout_ms:
                return kind
            await pause_ms(min(_IDLE_MS, max(1, timeout_ms - ticks_diff(ticks_ms(), start))))

    def pending(self, pid):
        """True while the QoS 1 message with packet id PID awaits its PUBACK."""
        return pid != 0 and pid in self._inflight

    def inflight_count(self):
        return self.max_inflight - self._inflight.count(0)

    async def _keep_alive(self):
        if not self.keepalive_ms:
            return
        now = self._clock()
        if self._ping_sent is not None:
            if ticks_diff(now, self._ping_sent) >= min(self.keepalive_ms, self.timeout_ms):
                self.close()
                raise MQTTError("no PINGRESP within %d ms: connection lost"
                                % min(self.keepalive_ms, self.timeout_ms))
        elif ticks_diff(now, self._last_tx) >= self.keepalive_ms // 2:
            await self.ping()

    async def _read_packet(self):
        # Returns the packet type handled, or 0 when no packet has started arriving. The fixed
        # header goes to _in[0:5], then the body over it from _in[0].
        if not self._recv_into(self._first):
            return 0
        try:
            size = 1
            length = -1
            while length < 0:  # one byte at a time: never past this packet
                await self._read_exact(self._inv[size:], 1)
                size += 1
                length = codec.remaining_length(self._in, 1, size)
            first = self._in[0]
            await self._read_exact(self._inv, codec.check_header(first, length, len(self._in)))
            kind = first & 0xF0
            if kind == PUBLISH:
                await self._handle_publish(first, length)
            elif kind == CONNACK:
                codec.check_body(CONNACK, self._in, 2)
            elif kind == PUBACK:
                pid = codec.check_body(PUBACK, self._in, 2)
                if pid and pid in self._inflight:
                    self._inflight[self._inflight.index(pid)] = 0
                else:
                    self.unknown_acks += 1
            elif kind == SUBACK:
                self._suback_pid = codec.check_body(SUBACK, self._in, length)
                self._suback_code = self._in[2]
            else:
                self._ping_sent = None  # PINGRESP
            return kind
        except MQTTError:  # a malformed packet: the connection cannot go on
            self.close()
            raise

    async def _handle_publish(self, first, length):
        # The topic length is in _in[0:2]; the topic, the packet id (QoS 1) and the payload follow.
        header = codec.publish_header(first, length, self._in)
        await self._read_exact(self._inv[2:], header - 2)
        qos = first & 0x06
        if qos:
            codec.puback(self._ack, self._in, header)  # before the payload takes _in
        body = length - header
        if length <= len(self._in):
            await self._read_exact(self._inv[header:], body)
            if self.on_message is not None:
                self.on_message(bytes(self._inv[2:header - 2 if qos else header]),
                                self._inv[header:length])
        else:
            self.oversized += 1
            while body:
                chunk = min(body, len(self._in))
                await self._read_exact(self._inv, chunk)
                body -= chunk
        if qos:
            await self._write_all(self._ack)

    # ---- low level --------------------------------------------------------------------------

    def _require_connection(self):
        if self._sock is None:
            raise MQTTError("not connected")

    def _new_pid(self):
        while True:
            self._next_pid = self._next_pid % 65535 + 1
            if self._next_pid not in self._inflight:
                return self._next_pid

    def _recv_into(self, buf):
        # Bytes read into BUF, or None when nothing is available yet; raises when the peer closed.
        sock = self._sock
        if sock is None:
            raise MQTTError("connection closed")
        try:
            n = sock.readinto(buf)
        except OSError as exc:
            if would_block(exc):
                return None
            self.close()
            raise MQTTError("connection lost: %s" % exc)
        if n == 0:
            self.close()
            raise MQTTError("connection closed by the broker")
        return n

    async def _read_exact(self, view, count):
        # Fills VIEW[:count], waiting (yielding) at most timeout_ms for the rest of a packet
        # already begun.
        got = 0
        start = ticks_ms()
        while got < count:
            n = self._recv_into(view[got:count])
            if n:
                got += n
                continue
            if ticks_diff(ticks_ms(), start) >= self.timeout_ms:
                self.close()
                raise MQTTError("packet incomplete after %d ms" % self.timeout_ms)
            await pause_ms(1)

    async def _write_all(self, data):
        view = memoryview(data)
        sent = 0
        start = ticks_ms()
        while sent < len(view):
            sock = self._sock
            if sock is None:
                raise MQTTError("connection closed")
            try:
                n = sock.write(view[sent:])
            except OSError as exc:
                if not would_block(exc):
                    self.close()
                    raise MQTTError("connection lost: %s" % exc)
                n = None
            if n:
                sent += n
                continue
            if ticks_diff(ticks_ms(), start) >= self.timeout_ms:
                self.close()
                raise MQTTError("could not send within %d ms" % self.timeout_ms)
            await pause_ms(1)
        self._last_tx = self._clock()

    async def _send(self, end, last):
        # The codec wrote a packet ending at END to _out but for its remaining length. When END is
        # past the buffer, LAST, its last field (payload or password), did not fit: it is written
        # from the caller's memory right after the rest.
        start = codec.finish(self._out, end)
        if end <= len(self._out):
            await self._write_all(self._outv[start:end])
            return
        await self._write_all(self._outv[start:end - len(last)])
        await self._write_all(last)
