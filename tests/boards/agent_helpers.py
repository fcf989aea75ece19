"""Shared by the agent's board tests and bench/agent_bench.py: a virtual board set up for the
agent (device settings, the hub's CA, an application), its console, and the hub's messages."""
import json
import os
import re
import shutil
import time

import serial

WINDOW_LINE = re.compile(r"microagent: window (\d+): (\d+) messages, (\d+) connections, (\d+) lost "
                         r"to a full cache, heap (\d+) peak (\d+) bytes, outbox queued (\d+) "
                         r"delivered (\d+) dropped (\d+) expired (\d+) too_large (\d+) "
                         r"unconfirmed (\d+)")
WINDOW_FIELDS = ("window", "messages", "connections", "lost", "heap", "peak", "queued",
                 "delivered", "dropped", "expired", "too_large", "unconfirmed")


def write_device_settings(path, connection_string, port, window_ms):
    """The board's microagent_device.json at PATH: its connection string, the hub's PORT and a
    window length for the test (flash.py writes none)."""
    with open(path, "w") as f:
        json.dump({"connection_string": connection_string, "port": port,
                   "window_ms": window_ms}, f)


def provision(flash, hub, connection_string, window_ms, app_source=None):
    """Writes what an engineer puts on the board besides flash.py's files: the device settings
    (connection string, the hub's port, a window length for the test), the hub's CA and the
    application (app.py)."""
    os.makedirs(flash, exist_ok=True)
    write_device_settings(os.path.join(flash, "microagent_device.json"), connection_string,
                          hub.port, window_ms)
    shutil.copy(hub.ca_der, os.path.join(flash, "microagent_ca.der"))
    if app_source is not None:
        with open(os.path.join(flash, "app.py"), "w") as f:
            f.write(app_source)


class Console:
    """The board's console after flash.py let go of it: every line, read as it comes."""

    def __init__(self, port):
        self.serial = serial.serial_for_url(port, timeout=0.1)
        self.lines = []
        self._pending = b""

    def close(self):
        self.serial.close()

    def poll(self):
        data = self.serial.read(4096)
        if data:
            self._pending += data
            while b"\n" in self._pending:
                line, self._pending = self._pending.split(b"\n", 1)
                self.lines.append(line.decode(errors="replace").strip("\r"))

    def wait_for(self, predicate, timeout, what):
        """Reads until PREDICATE(self) is true; AssertionError naming WHAT after TIMEOUT s."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.poll()
            if predicate(self):
                return
        raise AssertionError("%s not seen within %ss; the board said:\n%s"
                             % (what, timeout, "\n".join(self.lines[-40:])))

    def windows(self):
        """The agent's per-window status lines so far as dicts."""
        return window_reports(self.lines)


def window_reports(lines):
    """The agent's per-window status lines among LINES as dicts (WINDOW_FIELDS)."""
    found = []
    for line in lines:
        m = WINDOW_LINE.search(line)
        if m:
            found.append(dict(zip(WINDOW_FIELDS, map(int, m.groups()))))
    return found


def security_messages(hub, device):
    """Bodies (parsed JSON) of the messages the hub stored for DEVICE, oldest first."""
    return [json.loads(m["payload"]) for m in hub.messages(device)]


def events(messages, name):
    return [e for m in messages for e in m["Events"] if e["Name"] == name]


def items(messages, name):
    return [item for e in events(messages, name) for item in e["Payload"]]
