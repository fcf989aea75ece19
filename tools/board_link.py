"""A MicroPython board's raw REPL over any pyserial port or URL (/dev/ttyUSB0, a pty,
socket://host:port, rfc2217://host:port), through mpremote's SerialTransport.

The link never soft-resets on connect (mpremote's `resume`): a unix-port board would end. Errors
are LinkError with one line saying what is wrong with the port or the board.
"""
import ast
import errno
import hashlib
import os
import stat
import time

import serial
from mpremote.transport import TransportError
from mpremote.transport_serial import SerialTransport

RAW_REPL_BANNER = b"raw REPL; CTRL-B to exit\r\n"
PACED_SLICE_BYTES = 32
# The pause between slices starts short and doubles at each resend, up to the longest: how fast a
# board without flow control drains its UART depends on the board (and an emulated one on how
# busy its host is), so the link slows down to what the board has shown it can take.
PACED_PAUSE_S = 0.003
PACED_PAUSE_MAX_S = 0.05
SEND_ATTEMPTS = 4

# Prints one line, a dict repr; runs on every MicroPython from 1.9 (the micro:bit's) on.
PROBE = """import sys, os
f = {'platform': sys.platform, 'version': tuple(sys.implementation.version)[:3]}
f['mpy'] = getattr(sys.implementation, '_mpy', None)
try:
    import hashlib
    hashlib.sha256
    f['hashlib'] = True
except (ImportError, AttributeError):
    f['hashlib'] = False
try:
    s = os.statvfs(%(root)r or '.')
    f['free'] = s[1] * s[4]
except (AttributeError, OSError):
    f['free'] = None
z = []
for p in %(paths)r:
    try:
        z.append(os.stat(p)[6])
    except (OSError, AttributeError):
        z.append(-1)
f['sizes'] = z
print(repr(f))
"""


class LinkError(Exception):
    """The port or the board cannot do what was asked; one line."""


class ReplLost(LinkError):
    """The raw REPL protocol went out of step (a lost control byte); the board may still be fine."""


class CommandFailed(LinkError):
    """The board ran a command and it raised KIND (the exception's name)."""

    def __init__(self, message, kind):
        super().__init__(message)
        self.kind = kind


def _is_local_device(port):
    return "://" not in port


def _diagnose_open(port, timeout):
    """Why PORT cannot be opened, as one line (opens and closes it once more to find out)."""
    try:
        probe = serial.serial_for_url(port, exclusive=True, timeout=timeout)
    except (serial.SerialException, OSError) as exc:
        text = str(exc)
        code = getattr(exc, "errno", None)
        if "exclusively lock" in text or code in (errno.EBUSY, errno.EAGAIN):
            return "port %s is busy: another program (a terminal, mpremote, a flasher) has it open" % port
        if code == errno.ENOENT or "No such file" in text:
            return "port %s does not exist (is the board plugged in? is the path right?)" % port
        if code == errno.EACCES or "Permission denied" in text:
            return "no permission to open %s (add yourself to the dialout group)" % port
        if "Connection refused" in text or code == errno.ECONNREFUSED:
            return "nothing is listening at %s" % port
        return "cannot open %s: %s" % (port, text.splitlines()[0] if text else type(exc).__name__)
    probe.close()
    return "cannot open %s" % port


class BoardLink:
    """An open raw-REPL session with one board."""

    def __init__(self, port, timeout=10.0):
        self.port = port
        self.timeout = timeout
        self.resent = 0  # commands sent again because they arrived garbled
        self.pause_s = PACED_PAUSE_S  # between slices of a paced command; grows on resends
        device = port
        if _is_local_device(port) and os.path.exists(port):
            real = os.path.realpath(port)  # a pty behind a link: mpremote treats /dev/pts/N as a pty
            if stat.S_ISCHR(os.stat(real).st_mode):
                device = real
        try:
            self.transport = SerialTransport(device, timeout=timeout)
        except TransportError:
            raise LinkError(_diagnose_open(port, timeout)) from None

    def close(self):
        try:
            self.transport.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def enter_raw_repl(self):
        """Interrupts whatever runs (Ctrl-C twice) and enters the raw REPL without a soft reset."""
        ser = self.transport.serial
        ser.write(b"\r\x03")
        time.sleep(0.05)
        ser.write(b"\x03")
        time.sleep(0.05)
        while ser.in_waiting:
            ser.read(ser.in_waiting)
        ser.write(b"\r\x01")
        data = self.transport.read_until(1, RAW_REPL_BANNER, timeout=self.timeout,
                                         timeout_overall=self.timeout)
        if not data.endswith(RAW_REPL_BANNER):
            seen = data.decode(errors="replace").strip().splitlines()[-1:] or ["nothing"]
            raise LinkError("no raw REPL on %s: the device did not answer Ctrl-A within %gs "
                            "(is it running MicroPython? last output: %r)"
                            % (self.port, self.timeout, seen[0][-60:]))
        self.transport.in_raw_repl = True
        # The first command finds out whether the board has raw-paste mode (flow control); a
        # tiny one, so a board without it is not sent a long unpaced burst.
        self.exec("pass")

    def exec(self, code):
        """Runs CODE in the raw REPL; its stdout as bytes. LinkError with the device's last line."""
        try:
            if self.transport.use_raw_paste:
                out, err = self.transport.exec_raw(code, timeout=self.timeout)
            else:
                out, err = self._exec_paced(code.encode() if isinstance(code, str) else code)
        except TransportError as exc:
            raise ReplLost("lost the raw REPL on %s: %s" % (self.port, exc)) from None
        if err:
            last = err.decode(errors="replace").strip().splitlines()[-1:] or ["(no message)"]
            raise CommandFailed("the board failed running a command: %s" % last[0],
                                last[0].partition(":")[0])
        return out

    def _exec_paced(self, code):
        """The raw REPL without raw-paste mode (MicroPython before 1.14, e.g. the micro:bit's
        1.9.2) has no flow control: a slow board drops bytes of a long burst, so the command goes
        in small slices."""
        transport = self.transport
        if not transport.read_until(1, b">", timeout=self.timeout).endswith(b">"):
            raise LinkError("lost the raw REPL on %s: no prompt" % self.port)
        for i in range(0, len(code), PACED_SLICE_BYTES):
            transport.serial.write(code[i:i + PACED_SLICE_BYTES])
            time.sleep(self.pause_s)
        transport.serial.write(b"\x04")
        answer = transport.serial.read(2)
        if answer != b"OK":
            raise LinkError("the board did not accept a command on %s (answered %r)" % (self.port, answer))
        return transport.follow(self.timeout)

    def _literal(self, code):
        """The Python literal CODE prints (one line), run with resends."""
        def literal(out):
            try:
                return ast.literal_eval(out.strip().decode())
            except (ValueError, SyntaxError, UnicodeError):
                return None
        # A lost byte can leave a command that still runs but prints nothing: no literal, a resend.
        return literal(self._exec_intact(code, accept=lambda answer: literal(answer) is not None))

    def probe(self, root, paths):
        """Facts about the board: platform, version, mpy word, hashlib, free bytes, sizes of PATHS."""
        return self._literal(PROBE % {"root": root, "paths": list(paths)})

    def makedirs(self, paths):
        for path in paths:
            self._exec_intact("import os\ntry:\n os.mkdir(%r)\nexcept OSError as e:\n"
                              " if e.args[0] != %d: raise" % (path, errno.EEXIST))

    def listdir(self, path):
        """Names of the files (not folders) in PATH on the board ([] when it does not exist)."""
        return self._literal("import os\ntry:\n l = [e[0] for e in os.ilistdir(%r) if e[1] & 0x8000]\n"
                             "except OSError:\n l = []\nprint(repr(l))" % path)

    def remove(self, path):
        folder, _, name = path.rpartition("/")
        self._exec_intact("import os\nif %r in os.listdir(%r):\n os.remove(%r)" % (name, folder, path))

    def _exec_intact(self, code, expect=None, real_errors=(), accept=None):
        """exec(CODE), sent again when it may have arrived garbled: a board without flow control
        can drop a byte, and the command then fails (to parse, on a name or a file name it
        mangled, ...), prints 'garbled' from its own check, or prints something other than
        EXPECT (or that ACCEPT(output) refuses). Exceptions named in REAL_ERRORS are real failures (a full flash), raised at once;
        any other that persists is raised after the last attempt. A lost control byte (the end of
        a raw paste) leaves the protocol out of step: the raw REPL is entered again first. For
        commands that are safe to run again."""
        for attempt in range(1, SEND_ATTEMPTS + 1):
            if attempt > 1:
                self.pause_s = min(self.pause_s * 2, PACED_PAUSE_MAX_S)
            try:
                out = self.exec(code)
            except CommandFailed as exc:
                if exc.kind in real_errors or attempt == SEND_ATTEMPTS:
                    raise
                self.resent += 1
                continue
            except ReplLost as lost:
                if attempt == SEND_ATTEMPTS:
                    raise
                try:
                    self.enter_raw_repl()
                except LinkError:
                    raise lost from None
                self.resent += 1
                continue
            if b"garbled" not in out and (expect is None or out.strip() == expect) and (
                    accept is None or accept(out)):
                return out
            self.resent += 1
        raise LinkError("the serial link to %s keeps losing bytes (%d attempts)" % (self.port, SEND_ATTEMPTS))

    def write(self, path, data, progress=None, chunk_size=256):
        """Writes DATA to PATH on the board; a full flash is reported as such, the partial file
        removed. Each chunk is written only once its length and byte sum arrived intact, and
        counts as written only when the board answers with its length (a lost byte that turns the
        write call into a plain expression must not pass silently; some ports' write returns
        None). PROGRESS(bytes written, total) after each chunk."""
        try:
            # The path is checked before the file is opened: a mangled name would leave a
            # stray file behind.
            self._exec_intact("p=%r\nif len(p)==%d:\n f=open(p,'wb')\n w=f.write\n print(p)"
                              % (path, len(path)), expect=path.encode())
            for start in range(0, len(data), chunk_size):
                chunk = data[start:start + chunk_size]
                self._exec_intact("d=%r\nif len(d)==%d and sum(d)==%d:\n print(w(d) or len(d))\n"
                                  "else:\n print('garbled')" % (chunk, len(chunk), sum(chunk)),
                                  expect=b"%d" % len(chunk), real_errors=("OSError",))
                if progress:
                    progress(start + len(chunk), len(data))
            self._exec_intact("f.close()")
        except LinkError as exc:
            if "ENOSPC" not in str(exc) and "OSError: 28" not in str(exc):
                raise LinkError("cannot write %s on the board at %s: %s" % (path, self.port, exc)) from None
            try:
                self.exec("f.close()\nimport os\nos.remove(%r)" % path)
            except LinkError:
                pass
            raise LinkError("no space left on the board at %s while writing %s (%d bytes)"
                            % (self.port, path, len(data))) from None

    def sha256(self, path):
        """SHA-256 of PATH computed by the board's hashlib, as hex, and the bytes it hashed."""
        out = self._exec_intact(
            "import hashlib, binascii\nh = hashlib.sha256()\nn = 0\nf = open(%r, 'rb')\nwhile 1:\n"
            " b = f.read(256)\n if not b:\n  break\n h.update(b)\n n += len(b)\nf.close()\n"
            "print(binascii.hexlify(h.digest()).decode(), n)" % path)
        digest, _, size = out.decode().strip().partition(" ")
        return digest, int(size) if size.isdigit() else -1

    def read(self, path, chunk_size=256):
        """The bytes of PATH on the board, read back through the REPL."""
        self._exec_intact("f = open(%r, 'rb')\nr = f.read" % path)
        data = bytearray()
        while True:
            out = self._exec_intact("print(repr(r(%d)))" % chunk_size).strip()
            try:
                chunk = ast.literal_eval(out.decode())
            except (ValueError, SyntaxError):
                raise LinkError("unexpected answer reading %s back: %r" % (path, out[:60])) from None
            if not chunk:
                break
            data += chunk
        self._exec_intact("f.close()")
        return bytes(data)

    def verify(self, path, data, by_hash):
        """True when PATH on the board holds DATA: by the board's SHA-256, else byte for byte."""
        if by_hash:
            return self.sha256(path) == (hashlib.sha256(data).hexdigest(), len(data))
        return self.read(path) == data

    def start_raw(self, code):
        """Starts CODE in the raw REPL without waiting for it to end (it may run forever)."""
        try:
            self.transport.exec_raw_no_follow(code)
        except TransportError as exc:
            raise LinkError("cannot start code on %s: %s" % (self.port, exc)) from None

    def soft_reset(self):
        """Leaves the raw REPL and soft-resets: the board reruns boot.py and main.py."""
        ser = self.transport.serial
        ser.write(b"\r\x02")
        time.sleep(0.1)
        ser.write(b"\x04")
        self.transport.in_raw_repl = False

    def tail(self, seconds, stop_line, on_line):
        """Feeds each line the board prints to ON_LINE for up to SECONDS; True once one starts
        with STOP_LINE (the tail stops there)."""
        ser = self.transport.serial
        pending = b""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            waiting = ser.in_waiting
            if not waiting:
                time.sleep(0.02)
                continue
            pending += ser.read(waiting)
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                text = line.decode(errors="replace").replace("\x04", "").strip("\r")
                on_line(text)
                if text.lstrip(">").startswith(stop_line):
                    return True
        if pending.strip():
            on_line(pending.decode(errors="replace").replace("\x04", "").strip("\r"))
        return False
