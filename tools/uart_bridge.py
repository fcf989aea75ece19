"""The host end of the emulated board's network link: QEMU connects the board's UART1 to a TCP
socket here, and the board's `socket` module (boards/qemu-cortex-m3/socket.py) asks over it for
TCP connections, which this bridge opens on the host and relays, the way a serial modem does.

Frames on the link: 1 type byte, 2 length bytes (big-endian), the payload.
  board -> host: C b"host:port" (connect), D data, X (close)
  host -> board: A b"" (connected) or A b"error text" (refused), D data, X (the peer closed)
One connection at a time: a new C closes the previous connection. The board's TLS runs over the
relayed bytes end to end, so the bridge never sees plain text.
"""
import select
import socket
import struct
import threading

CONNECT, DATA, CLOSE, ACCEPTED = b"C", b"D", b"X", b"A"
MAX_PAYLOAD = 4096
CONNECT_TIMEOUT_S = 10


class UartBridge:
    """Listens on 127.0.0.1 for QEMU's UART (`-serial tcp:127.0.0.1:PORT`) and serves it in a
    thread until QEMU disconnects or stop() is called. LOG(text) hears each connection."""

    def __init__(self, log=None):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.port = self.listener.getsockname()[1]
        self.log = log or (lambda text: None)
        self.connections = []  # (host, port, outcome) of each connect the board asked for
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def qemu_args(self):
        return ["-serial", "tcp:127.0.0.1:%d" % self.port]

    def stop(self):
        self._stopping.set()
        self.listener.close()
        self._thread.join(timeout=5)

    def _serve(self):
        try:
            self.listener.settimeout(0.5)
            while not self._stopping.is_set():
                try:
                    link, _ = self.listener.accept()
                except socket.timeout:
                    continue
                except OSError:
                    return
                with link:
                    self._relay(link)
        except OSError:
            pass

    def _relay(self, link):
        pending = b""
        upstream = None
        try:
            while not self._stopping.is_set():
                watched = [link] + ([upstream] if upstream else [])
                readable, _, _ = select.select(watched, [], [], 0.5)
                if upstream in readable:
                    try:
                        data = upstream.recv(MAX_PAYLOAD)
                    except OSError:
                        data = b""
                    if data:
                        link.sendall(DATA + struct.pack(">H", len(data)) + data)
                    else:
                        link.sendall(CLOSE + b"\0\0")
                        upstream.close()
                        upstream = None
                if link in readable:
                    data = link.recv(65536)
                    if not data:
                        return  # QEMU ended
                    pending += data
                    while len(pending) >= 3:
                        kind = pending[:1]
                        if kind not in (CONNECT, DATA, CLOSE):
                            # Out of step (the board restarted mid-frame): what is pending is
                            # no frame; the board's next connect starts over.
                            self.log("uart link: unknown frame type %r: %d bytes dropped"
                                     % (kind, len(pending)))
                            pending = b""
                            break
                        length = struct.unpack(">H", pending[1:3])[0]
                        if len(pending) < 3 + length:
                            break
                        payload, pending = pending[3:3 + length], pending[3 + length:]
                        upstream = self._frame(link, kind, payload, upstream)
        finally:
            if upstream:
                upstream.close()

    def _frame(self, link, kind, payload, upstream):
        if kind == CONNECT:
            if upstream:
                upstream.close()
            host, _, port = payload.decode(errors="replace").rpartition(":")
            try:
                upstream = socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S)
                upstream.settimeout(None)
            except (OSError, ValueError) as exc:
                reason = ("cannot connect to %s:%s: %s" % (host, port, exc)).encode()[:200]
                self.connections.append((host, port, "refused"))
                self.log("uart link: %s" % reason.decode())
                link.sendall(ACCEPTED + struct.pack(">H", len(reason)) + reason)
                return None
            self.connections.append((host, port, "connected"))
            self.log("uart link: connected to %s:%s" % (host, port))
            link.sendall(ACCEPTED + b"\0\0")
            return upstream
        if kind == DATA:
            if upstream:
                try:
                    upstream.sendall(payload)
                except OSError:
                    link.sendall(CLOSE + b"\0\0")
                    upstream.close()
                    return None
            return upstream
        if upstream:  # CLOSE
            upstream.close()
        return None
