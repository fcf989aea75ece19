"""Replaying a trace through either engine: the firmware engine inside MicroPython (or CPython),
or the host engine. Messages go to a sink one JSON line each; warnings to a callback."""
import os
import subprocess
import threading
import sys
import uuid

from microagent.replay_main import build_engine
from microagent.trace import Replay, TraceError, replay_file

from host_sim.engine import build_host_engine
from host_sim.runtime import micropython_command

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
        on_message(bytes(buffer[:length]).decode())

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
HOST_CACHE_SIZE = 256


def replay_host(trace, window_ms, cache_size, on_message, on_warning, max_message_size=4096,
                agent=None):
    """Runs TRACE through the host engine (Linux semantics) in this process; CACHE_SIZE None
    means the spec default for every collector."""
    def factory(sink, warn):
        return build_host_engine(cache_size or HOST_CACHE_SIZE, sink, warn, agent or agent_id(),
                                 max_message_size)
    return _in_process(factory, trace, window_ms, on_message, on_warning)


def replay_firmware(trace, window_ms, cache_size, on_message, on_warning, runtime="micropython",
                    heap="64K", max_message_size=4096, agent=None):
    """Runs TRACE through the firmware engine (RTOS semantics), inside MicroPython by default.
    CACHE_SIZE sets every cache; None keeps the firmware defaults (FIRMWARE_CACHE_SIZES)."""
    agent = agent or agent_id()
    sizes = (cache_size,) * 3 if cache_size else FIRMWARE_CACHE_SIZES
    if runtime == "cpython":
        def factory(sink, warn):
            return build_engine(sizes[0], sizes[1], sizes[2], max_message_size, agent, sink, warn)
        _in_process(factory, trace, window_ms, on_message, on_warning)
        return
    args = [os.path.abspath(trace), "--window-ms", str(window_ms), "--process-cache",
            str(sizes[0]), "--network-cache", str(sizes[1]), "--login-cache", str(sizes[2]),
            "--max-message-size", str(max_message_size), "--agent-id", agent]
    argv, env = micropython_command("microagent.replay_main", args, heap)
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, encoding="utf-8", errors="replace")
    errors = []
    # stderr is drained by a thread so a chatty run cannot block on a full pipe.

    def drain():
        for line in proc.stderr:
            if line.startswith("warning: "):
                on_warning(line[len("warning: "):].rstrip("\n"))
            else:
                errors.append(line.rstrip("\n"))
    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    for line in proc.stdout:
        on_message(line.rstrip("\n"))
    proc.wait()
    reader.join()
    if proc.returncode == 0:
        return
    if any("MemoryError" in line for line in errors):
        raise ReplayError("MicroPython ran out of heap (-X heapsize=%s) with caches of %s entries "
                          "(process, network, login): raise --heap or lower --cache-size"
                          % (heap, "/".join(str(n) for n in sizes)))
    for line in errors:
        if line.startswith("error: "):
            raise ReplayError(line[len("error: "):])
    raise ReplayError("MicroPython exited with code %d: %s"
                      % (proc.returncode, errors[-1] if errors else "no message"))


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
