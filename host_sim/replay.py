"""Replaying a trace through either engine: the firmware engine inside MicroPython (or CPython),
or the host engine. Messages go to a sink one JSON line each; warnings to a callback."""
import os
import re
import subprocess
import sys
import threading
import uuid

from microagent.decode import body_of_line, message_line
from microagent.encode import JSON
from microagent.engine import build_engine
from microagent.trace import Replay, TraceError, replay_file

from host_sim import targets
from host_sim.child import dies_with_parent
from host_sim.engine import build_host_engine
from host_sim.private_files import private_folder
from host_sim.runtime import micropython_command

# The firmware child's report of a fresh DPS assignment (microagent.replay_uplink): cached here.
ASSIGNMENT_LINE = "dps-assignment "
_NAMESPACE = uuid.UUID("5b0a6f1e-7c1d-4c55-9a51-6d6963726f61")


class ReplayError(Exception):
    """The replay could not go on; str() is one line for the user."""


def agent_id(root="/"):
    """A GUID stable per device: derived from /etc/machine-id (else the host name)."""
    try:
        with open(os.path.join(root, "etc/machine-id")) as f:
            seed = f.read().strip()
    except OSError:
        seed = os.uname().nodename
    return str(uuid.uuid5(_NAMESPACE, seed or "unknown"))


def _in_process(engine_factory, trace, window_ms, on_message, on_warning):
    def sink(buffer, length):
        on_message(message_line(buffer, length))

    engine = engine_factory(sink, on_warning)
    replay = Replay(engine, window_ms)
    try:
        replay_file(replay, trace)
    except TraceError as exc:
        raise ReplayError(str(exc))
    except OSError as exc:
        raise ReplayError("cannot read trace %s: %s" % (trace, exc.strerror or exc))
    return replay


# Firmware defaults (replay_main): the spec's 256 network entries, small process/login caches.
FIRMWARE_CACHE_SIZES = (16, 256, 16)
# The firmware's IPv6 network cache unless --cache-size sets it too (the RTOS module's 64).
FIRMWARE_IPV6_CACHE_SIZE = 64
HOST_CACHE_SIZE = 256


def replay_host(trace, window_ms, cache_size, on_message, on_warning, max_message_size=4096,
                agent=None, encoding=JSON):
    """Runs TRACE through the host engine (Linux semantics) in this process; CACHE_SIZE None
    means the spec default for every collector. ON_MESSAGE gets each message as a line
    (message_line)."""
    def factory(sink, warn):
        return build_host_engine(cache_size or HOST_CACHE_SIZE, sink, warn, agent or agent_id(),
                                 max_message_size, encoding=encoding)
    return _in_process(factory, trace, window_ms, on_message, on_warning)


def replay_firmware(trace, window_ms, cache_size, on_message, on_warning, runtime="micropython",
                    heap="64K", max_message_size=4096, agent=None, uplink=None, on_info=None,
                    encoding=JSON):
    """Runs TRACE through the firmware engine (RTOS semantics), inside MicroPython by default.
    CACHE_SIZE sets every cache; None keeps the firmware defaults (FIRMWARE_CACHE_SIZES).
    UPLINK (an Uplink) sends the messages to IoT Hub from inside MicroPython instead of
    returning them; ON_INFO hears its delivery report. Returns the exit status (0, or 1 when
    not every message was delivered)."""
    agent = agent or agent_id()
    sizes = (cache_size,) * 3 if cache_size else FIRMWARE_CACHE_SIZES
    size6 = cache_size or FIRMWARE_IPV6_CACHE_SIZE
    if runtime == "cpython":
        if uplink is not None:
            raise ReplayError("sending to a hub runs the firmware engine on MicroPython only")

        def factory(sink, warn):
            return build_engine(sizes[0], sizes[1], sizes[2], max_message_size, agent, sink, warn,
                                encoding, size6)
        _in_process(factory, trace, window_ms, on_message, on_warning)
        return 0
    if runtime == "qemu-cortex-m3" and uplink is not None:
        raise ReplayError("sending to a hub from replay runs on micropython or micropython32; "
                          "on qemu-cortex-m3 the agent sends over UART1 (docs/targets.md)")
    extra = uplink.firmware_args() if uplink is not None else []
    secret = uplink.secret() if uplink is not None else None
    on_info = on_info or on_warning
    if uplink is not None and uplink.dps:
        on_info = uplink.on_child_info(on_info)
    args = _replay_args(os.path.abspath(trace), window_ms, sizes, max_message_size, agent,
                        extra + ["--encoding", encoding, "--network6-cache", str(size6)])
    try:
        if runtime == "qemu-cortex-m3":
            return _run_qemu(trace, args, sizes, heap, on_message, on_warning,
                             on_info or on_warning)
        if runtime == "micropython32":
            argv, env = targets.micropython32_command(args, heap)
        else:
            argv, env = micropython_command("microagent.replay_main", args, heap)
    except targets.TargetError as exc:
        raise ReplayError(str(exc))
    return _run_micropython(trace, argv, env, secret, sizes, heap, on_message, on_warning,
                            on_info)


_BASE64_LINE = re.compile(r"^[A-Za-z0-9+/]+=*$")


def _replay_args(trace, window_ms, sizes, max_message_size, agent, extra):
    return [trace, "--window-ms", str(window_ms), "--process-cache", str(sizes[0]),
            "--network-cache", str(sizes[1]), "--login-cache", str(sizes[2]),
            "--max-message-size", str(max_message_size), "--agent-id", agent] + extra


def _out_of_heap(heap, sizes):
    return ReplayError("MicroPython ran out of heap (%s) with caches of %s entries (process, "
                       "network, login): raise --heap or lower --cache-size"
                       % (heap, "/".join(str(n) for n in sizes)))


def _run_qemu(trace, args, sizes, heap, on_message, on_warning, on_info):
    """replay_main on the emulated Cortex-M3: the trace and replay's modules read from the host
    through semihosting (/host), the messages streamed back over the console."""
    total = targets.heap_of_image("qemu-cortex-m3")
    wanted = targets.heap_bytes(heap)
    if wanted > total:
        raise ReplayError("--heap %s is more than the qemu-cortex-m3 image's heap (%d bytes, "
                          "MICROPY_HEAP_SIZE in tools/build_firmware.py)" % (heap, total))
    on_board = "/host" + os.path.abspath(trace)
    args = [on_board] + args[1:]
    code = ("import hostfs\nhostfs.mount('/host')\n" +
            targets.launcher(args, "/host" + targets.replay_modules(), total - wanted))
    errors, status = [], []
    compact = "compact" in args  # compact messages come back as base64 lines

    def line(text):
        text = text.replace(on_board, os.path.abspath(trace))
        if text.startswith("{") or (compact and _BASE64_LINE.match(text)):
            on_message(text)
        elif text.startswith("warning: "):
            on_warning(text[len("warning: "):])
        elif text.startswith("info: "):
            on_info(text[len("info: "):])
        elif text.startswith(targets.EXIT_PREFIX):
            status.append(int(text[len(targets.EXIT_PREFIX):]))
        elif text.strip():
            errors.append(text)
    with targets.QemuBoard() as board:
        failure = board.run(code, line)
    if failure:
        errors += failure.replace(on_board, os.path.abspath(trace)).splitlines()
    if status and status[0] == 0:
        return 0
    return _failed(trace, status[0] if status else 1, errors, sizes, "%s of %d" % (heap, total),
                   on_info)


def _failed(trace, returncode, errors, sizes, heap, on_info):
    if returncode == 1 and errors and errors[-1].startswith("error: not every message"):
        on_info(errors[-1][len("error: "):])
        return 1
    if any("MemoryError" in line for line in errors):
        raise _out_of_heap(heap, sizes)
    for line in errors:
        if line.startswith("error: "):
            # The child was given the absolute path; the user named the trace as given.
            raise ReplayError(line[len("error: "):].replace(os.path.abspath(trace) + ":",
                                                             trace + ":", 1))
    raise ReplayError("MicroPython exited with code %d: %s"
                      % (returncode, errors[-1] if errors else "no message"))


def _run_micropython(trace, argv, env, secret, sizes, heap, on_message, on_warning, on_info):
    """Runs replay_main under MicroPython. SECRET (the connection string) goes down a pipe the
    child reads before any network I/O: it is never on disk, on argv or in the environment,
    and the child is killed with this process, so a crash leaves neither behind."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.PIPE if secret else subprocess.DEVNULL,
                            text=True, encoding="utf-8", errors="replace",
                            preexec_fn=dies_with_parent())
    if secret:
        try:
            proc.stdin.write(secret + "\n")  # far below a pipe's buffer: never blocks
            proc.stdin.close()
        except BrokenPipeError:
            pass  # the child already failed; its stderr says why
    errors = []
    # stderr is drained by a thread so a chatty run cannot block on a full pipe.

    def drain():
        for line in proc.stderr:
            if line.startswith("warning: "):
                on_warning(line[len("warning: "):].rstrip("\n"))
            elif line.startswith("info: "):
                on_info(line[len("info: "):].rstrip("\n"))
            else:
                errors.append(line.rstrip("\n"))
    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    for line in proc.stdout:
        on_message(line.rstrip("\n"))
    proc.wait()
    reader.join()
    if proc.returncode == 0:
        return 0
    return _failed(trace, proc.returncode, errors, sizes, "-X heapsize=%s" % heap, on_info)


class Uplink:
    """Where replayed messages go instead of stdout: IoT Hub (a device connection string and
    the CA of the hub's certificate), or for the host engine a plain MQTT broker URL."""

    def __init__(self, connection_string=None, ca_file=None, port=None, broker=None,
                 outbox_path=None, timeout_s=60, dps=None, cert=None):
        self.connection_string = connection_string
        self.cert = cert  # (certificate file, key file) for an x509=true connection string
        self.dps = dps  # $MICROAGENT_DPS: provision through DPS instead of a connection string
        self.ca_file = ca_file
        self.port = port
        self.broker = broker
        self.outbox_path = outbox_path
        self.timeout_s = timeout_s

    def firmware_args(self):
        """replay_main arguments; the connection string goes down the child's stdin
        (`--credentials -`), never on argv or on disk."""
        if self.broker:
            raise ReplayError("--broker is for the host engine; the firmware engine talks to "
                              "IoT Hub (--connection-string)")
        if self.dps:
            credentials = ["--dps", "-"] + self._cached_assignment()
        else:
            credentials = ["--credentials", "-"]
        if self.cert:
            credentials += ["--cert", os.path.abspath(self.cert[0]), "--key",
                            os.path.abspath(self.cert[1])]
        return credentials + ["--ca", os.path.abspath(self.ca_file), "--port",
                              str(self.port or 8883), "--wait-ms", str(int(self.timeout_s * 1000))]

    def secret(self):
        """What goes down the firmware child's stdin: the DPS settings or the connection string."""
        return self.dps or self.connection_string

    def dps_cache(self):
        from host_sim.provisioning import cache_path
        return cache_path(self.outbox_path or default_outbox_path(create=False))

    def _cached_assignment(self):
        # replay_main --dps-hub/--dps-device: the assignment cached by an earlier run
        from host_sim.provisioning import ProvisioningError, read_cache, settings_of
        try:
            assigned = read_cache(self.dps_cache(), settings_of(self.dps))
        except ProvisioningError as exc:
            raise ReplayError(str(exc))
        return ["--dps-hub", assigned[0], "--dps-device", assigned[1]] if assigned else []

    def on_child_info(self, on_info):
        """ON_INFO, but the child's `dps-assignment {json}` line is cached (0600), not shown."""
        from host_sim.provisioning import write_cache

        def info(text):
            if text.startswith(ASSIGNMENT_LINE):
                write_cache(self.dps_cache(), text[len(ASSIGNMENT_LINE):])
            else:
                on_info(text)
        return info

    def open_transport(self, log, config=None, on_config=None):
        """(outbox, transport) for the host agent: the persistent outbox and a started paho
        transport. ReplayError (one line) when the certificate or URL is wrong."""
        from host_sim.outbox import SqliteOutbox
        from host_sim.transport import Transport
        connection_string = self.connection_string
        if self.dps:
            from host_sim.provisioning import ProvisioningError, connection_string as provisioned
            try:
                connection_string = provisioned(self.dps, self.ca_file, self.dps_cache(), log)
            except ProvisioningError as exc:
                raise ReplayError(str(exc))
        try:
            outbox = SqliteOutbox(self.outbox_path or default_outbox_path())
            transport = Transport(outbox, connection_string=connection_string,
                                  broker=self.broker, ca_file=self.ca_file, port=self.port,
                                  cert_file=self.cert and self.cert[0],
                                  key_file=self.cert and self.cert[1],
                                  log=log, config=config, on_config=on_config)
            transport.start()
        except ValueError as exc:
            raise ReplayError(str(exc))
        return outbox, transport


def replay_host_to_hub(trace, window_ms, cache_size, uplink, on_warning, on_info,
                       max_message_size=4096, agent=None, encoding=JSON):
    """Replays TRACE through the host engine into the persistent outbox and delivers it with
    paho-mqtt. Returns the exit status: 0 when everything was acknowledged, 1 otherwise (what
    is left stays in the outbox file for the next run)."""
    outbox, transport = uplink.open_transport(on_info)
    try:
        replay_host(trace, window_ms, cache_size, lambda m: transport.send(body_of_line(m)),
                    on_warning, max_message_size, agent, encoding)
    finally:
        delivered = transport.flush(uplink.timeout_s)
        counters = outbox.counters()
        on_info("delivered %d messages; %d left in the outbox %s, %d expired"
                % (counters["delivered"], outbox.count(), outbox.path, counters["expired"]))
        transport.close()
        outbox.close()
    return 0 if delivered else 1


def default_outbox_path(create=True):
    """$XDG_STATE_HOME/microagent/outbox.db; CREATE makes its folder."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    if create:
        private_folder(os.path.join(state, "microagent"))
    return os.path.join(state, "microagent", "outbox.db")


def parse_heap(text):
    """'64K' / '1M' / '65536' -> the same text, validated for micropython -X heapsize."""
    value = text.strip().upper()
    number = value[:-1] if value[-1:] in ("K", "M") else value
    if not number.isdigit() or int(number) == 0:
        raise ValueError("--heap must look like 64K, 1M or 65536, got %r" % text)
    return value


def write_line(text, stream=None):
    stream = stream or sys.stdout
    stream.write(text + "\n")
    stream.flush()
