"""A hub emulator filled by real replays (TLS, the host and the firmware engine), shared by the
alerts CLI and console tests; and a reader of a child's output lines with a deadline."""
import json
import os
import queue
import subprocess
import sys
import threading

from alert_helpers import START, login_failed, merged, quiet
from host_sim import tracegen
from host_sim.commands.replay import SENDING_HEAP

MICROAGENT = os.path.join(os.path.dirname(sys.executable), "microagent")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUIET_SAMPLE = os.path.join(REPO, "tests", "fixtures", "traces", "quiet-device.jsonl")
ATTACKER = "203.0.113.9"


def replay_to_hub(hub, device, trace, tmp_dir, engine="host", window_s=600):
    env = dict(os.environ, MICROAGENT_CONNECTION_STRING=hub.add_device(device))
    args = [MICROAGENT, "replay", str(trace), "--engine", engine, "--window", str(window_s),
            "--ca", hub.ca, "--port", str(hub.port), "--outbox",
            os.path.join(str(tmp_dir), device + "-outbox.db")]
    if engine == "firmware":
        args += ["--heap", SENDING_HEAP["micropython"]]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def attacked_trace(path):
    """Four quiet hours with 15 failed logins from one address in 70 s at 02:00 and a
    connection to a new destination at 03:00."""
    burst = [login_failed(START + 7200 + 5 * i, ATTACKER) for i in range(15)]
    miner = {"kind": "connection", "t": START + 3 * 3600, "protocol": "TCP",
             "local_address": "192.168.1.20", "local_port": 40100,
             "remote_address": "198.51.100.66", "remote_port": 3333, "bytes_in": 10,
             "bytes_out": 999, "direction": "out"}
    tracegen.write(merged(quiet(), burst, [miner]), path)
    return path


def write_rules(path, learning_s):
    with open(path, "w") as f:
        json.dump({"learning": {"duration_s": learning_s}}, f)
    return str(path)


class Lines:
    """The stdout (or stderr) lines of a child, read by a thread; next(timeout) waits for one."""

    def __init__(self, stream):
        self.queue = queue.Queue()
        self.seen = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream):
        for line in stream:
            self.queue.put(line.rstrip("\n"))
        self.queue.put(None)

    def wait_for(self, predicate, timeout):
        """The first line for which PREDICATE is true; AssertionError after TIMEOUT seconds or
        at the end of the stream."""
        import time
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no matching line within %d s; saw %r" % (timeout, self.seen[-5:]))
            try:
                line = self.queue.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError("stream ended; saw %r" % self.seen[-5:])
            self.seen.append(line)
            if predicate(line):
                return line
