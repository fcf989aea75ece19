# The emulated board's `socket` module (frozen into its image): TCP connections carried over UART1
# to a bridge on the host (tools/uart_bridge.py), the way a board with a serial modem reaches the
# network. The agent's MQTT client, TLS (ssl.wrap_socket works on any stream) and the
# NetworkActivity collector use it exactly as they use lwIP sockets over Wi-Fi.
#
# The link carries frames: 1 type byte, 2 length bytes (big-endian), the payload.
#   board -> host: C "host:port" (open a connection), D data, X (close)
#   host -> board: A "" (connected) or A "error text", D data, X (the peer closed)
# One connection at a time: opening a new one closes the previous one.
import errno
import io
from time import ticks_diff, ticks_ms

from micropython import const

import mps2board

AF_INET = const(2)
AF_INET6 = const(10)
SOCK_STREAM = const(1)
SOCK_DGRAM = const(2)
IPPROTO_TCP = const(6)
SOL_SOCKET = const(1)
SO_REUSEADDR = const(4)

_CONNECT = const(0x43)  # 'C'
_DATA = const(0x44)  # 'D'
_CLOSE = const(0x58)  # 'X'
_ACCEPTED = const(0x41)  # 'A'
_MAX_FRAME = const(4096)
_POLL_RD = const(1)
_POLL_WR = const(4)
_POLL_HUP = const(16)
_IOCTL_POLL = const(3)
_IOCTL_CLOSE = const(4)

_uart = None
_current = None


def _link():
    global _uart
    if _uart is None:
        _uart = mps2board.UART(1)
    return _uart


def getaddrinfo(host, port, af=0, type=0, proto=0, flags=0):
    # The host bridge resolves names (as a modem does): the address is the name itself.
    return [(AF_INET, SOCK_STREAM, IPPROTO_TCP, "", (host, port))]


class socket(io.IOBase):
    def __init__(self, af=AF_INET, type=SOCK_STREAM, proto=IPPROTO_TCP):
        if type != SOCK_STREAM:
            raise OSError(errno.EINVAL)
        self._uart = _link()
        self._header = bytearray(3)  # of the frame being received
        self._out_header = bytearray(3)  # of the frame being sent (a send may come mid-receive)
        self._got = 0  # bytes of the next frame header read so far
        self._left = 0  # payload bytes of the current data frame not read yet
        self._timeout_ms = None
        self._open = False
        self._eof = False

    # ---- framing ---------------------------------------------------------------------------------

    def _send_frame(self, kind, payload=b""):
        header = self._out_header
        header[0] = kind
        header[1] = len(payload) >> 8
        header[2] = len(payload) & 0xFF
        self._uart.write(header)
        if payload:
            self._uart.write(payload)

    def _next_header(self):
        """True once a whole frame header is in; frames other than data are handled here."""
        while self._got < 3:
            chunk = self._uart.read(3 - self._got)
            if not chunk:
                return False
            self._header[self._got:self._got + len(chunk)] = chunk
            self._got += len(chunk)
        self._got = 0
        kind = self._header[0]
        length = self._header[1] << 8 | self._header[2]
        if kind == _DATA:
            self._left = length
        elif kind == _CLOSE:
            self._eof = True
        elif kind == _ACCEPTED:
            if length:  # refused: the payload says why
                self._read_exact(length)
                self._eof = True
            else:
                self._open = True
        else:
            raise OSError(errno.EIO)
        return True

    def _poll_frames(self):
        """Reads frame headers until a data payload or the end is pending."""
        while self._left == 0 and not self._eof and self._next_header():
            pass

    def _read_exact(self, count):
        data = b""
        while len(data) < count:
            chunk = self._uart.read(count - len(data))
            if chunk:
                data += chunk
        return data

    def _timed_out(self, start, timeout_ms):
        return timeout_ms is not None and ticks_diff(ticks_ms(), start) >= timeout_ms

    # ---- socket API ------------------------------------------------------------------------------

    def connect(self, addr):
        global _current
        if _current is not None and _current is not self:
            _current.close()
        _current = self
        self._send_frame(_CONNECT, ("%s:%d" % (addr[0], addr[1])).encode())
        if self._timeout_ms == 0:  # non-blocking (asyncio): poll for writable, as with lwIP
            raise OSError(errno.EINPROGRESS)
        timeout = 15000 if self._timeout_ms is None else self._timeout_ms
        start = ticks_ms()
        while not (self._open or self._eof):
            self._poll_frames()
            if self._left:  # data of an earlier connection still on the line
                self._left -= len(self._uart.read(self._left) or b"")
            if self._timed_out(start, timeout):
                raise OSError(errno.ETIMEDOUT)
        if not self._open:
            raise OSError(errno.ECONNREFUSED)

    def settimeout(self, seconds):
        self._timeout_ms = None if seconds is None else int(seconds * 1000)

    def setblocking(self, flag):
        self._timeout_ms = None if flag else 0

    def setsockopt(self, *args):
        pass

    def readinto(self, buf, size=-1):
        want = len(buf) if size < 0 else min(size, len(buf))
        if want == 0:
            return 0
        start = ticks_ms()
        while True:
            self._poll_frames()
            if self._left > 0 and self._uart.any():
                break
            if self._left == 0 and self._eof:
                return 0  # end of stream
            if self._timed_out(start, self._timeout_ms):
                if self._timeout_ms == 0:
                    return None
                raise OSError(errno.ETIMEDOUT)
        n = self._uart.readinto(memoryview(buf)[:min(want, self._left)]) or 0
        self._left -= n
        return n

    def read(self, size=-1):
        buf = bytearray(size if size > 0 else 512)
        n = self.readinto(buf)
        return None if n is None else bytes(buf[:n])

    def recv(self, size):
        return self.read(size) or b""

    def write(self, data, size=-1):
        if not self._open:
            raise OSError(errno.ENOTCONN)
        view = memoryview(data)
        total = len(view) if size < 0 else size
        sent = 0
        while sent < total:
            part = min(total - sent, _MAX_FRAME)
            self._send_frame(_DATA, view[sent:sent + part])
            sent += part
        return total

    def send(self, data):
        return self.write(data)

    def sendall(self, data):
        self.write(data)

    def ioctl(self, request, arg):
        if request == _IOCTL_POLL:
            if not self._eof:
                self._poll_frames()  # a connect's answer, a close
            if self._eof and not self._open:
                return _POLL_HUP  # refused, or closed
            ready = 0
            if arg & _POLL_RD and (self._eof or self._uart.any()):
                ready |= _POLL_RD
            if arg & _POLL_WR and self._open:
                ready |= _POLL_WR
            return ready
        if request == _IOCTL_CLOSE:
            self.close()
            return 0
        return 0

    def close(self):
        global _current
        if self._open:
            self._send_frame(_CLOSE)
        self._open = False
        self._eof = True
        if _current is self:
            _current = None
