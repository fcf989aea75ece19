# CPython sockets lack MicroPython's stream methods; this adapter gives them readinto/write that
# return None when the socket would block, as MicroPython's do, so the firmware MQTT client also
# runs on CPython (e.g. the firmware engine under --runtime cpython). Not needed on a board.
# CPython says "would block" with exceptions of its own: BlockingIOError (EAGAIN), and
# SSLWantReadError/SSLWantWriteError from a TLS socket.
import ssl

_WOULD_BLOCK = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


class CPythonStream:
    def __init__(self, sock):
        self._sock = sock

    def readinto(self, buf):
        try:
            return self._sock.recv_into(buf)
        except _WOULD_BLOCK:
            return None

    def write(self, buf):
        try:
            return self._sock.send(buf)
        except _WOULD_BLOCK:
            return None

    def setblocking(self, flag):
        self._sock.setblocking(flag)

    def close(self):
        self._sock.close()
