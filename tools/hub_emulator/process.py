"""Running the emulator as a subprocess, for tests and demos: start, stop, kill, and look inside.

    with HubProcess(tmp_path / "hub") as hub:          # TLS and plain TCP on free ports
        cs = hub.add_device("dev1")                    # connection string
        ... connect to 127.0.0.1:hub.port with CA hub.ca ...
        hub.messages("dev1")                           # [{"id", "device", "time", "topic", "properties", "payload"}]
"""
import json
import os
import signal
import subprocess
import sys
import time

from hub_emulator import certs, registry, sas, store, twin
from hub_emulator.database import hub_name, open_db
from hub_emulator.server import STATE_FILE

API_VERSION = "2021-04-12"
HUB_SETTINGS = ("MICROAGENT_HUB_ROUTE", "MICROAGENT_KAFKA_CONNECTION_STRING")   # route.py


def child_environment(environ=None):
    """The server's environment: this one, less the agent's and the consumers' secrets (the
    hub reads only its route's settings there), with the folder holding hub_emulator first on the
    path, so `python -m hub_emulator` finds it wherever microagent is installed (a checkout,
    a venv, /usr/lib/microagent of the .deb)."""
    environ = os.environ if environ is None else environ
    env = {k: v for k, v in environ.items()
           if not k.startswith("MICROAGENT_") or k in HUB_SETTINGS}
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join([here] + [p for p in environ.get(
        "PYTHONPATH", "").split(os.pathsep) if p])
    return env


class HubProcess:
    def __init__(self, data_dir, port=0, plain_port=0, host="127.0.0.1", extra_args=(), python=sys.executable):
        """PORT 0 picks a free port; PLAIN_PORT None serves TLS only."""
        self.data_dir = str(data_dir)
        self.python, self.host, self.extra_args = python, host, list(extra_args)
        self.ports = (port, plain_port)
        self.log_path = os.path.join(self.data_dir, "serve.log")
        self.proc = None
        self.state = None
        os.makedirs(self.data_dir, mode=0o700, exist_ok=True)
        self.db = open_db(self.data_dir)

    def command(self):
        port, plain_port = self.ports
        return ([self.python, "-m", "hub_emulator", "serve", "--data", self.data_dir, "--host", self.host,
                 "--port", str(port)] + (["--plain-port", str(plain_port)] if plain_port is not None else [])
                + self.extra_args)

    def start(self, timeout=30):
        """Starts the server and waits until it listens (its DIR/hub.json names this process).

        A restart listens on the ports the first start got, so clients reconnect to the same address.
        """
        state_path = os.path.join(self.data_dir, STATE_FILE)
        if os.path.exists(state_path):
            os.unlink(state_path)  # left by a killed run
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=child_environment())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("hub exited with %d:\n%s" % (self.proc.returncode, self.log()))
            if os.path.exists(state_path):
                with open(state_path) as f:
                    state = json.load(f)
                if state["pid"] == self.proc.pid:
                    self.state = state
                    self.ports = (state["port"], state["plain_port"])
                    return self
            time.sleep(0.05)
        self.kill()
        raise RuntimeError("hub did not start listening within %ds:\n%s" % (timeout, self.log()))

    def stop(self, timeout=10):
        """SIGTERM, then SIGKILL if it has not exited after TIMEOUT seconds; returns the exit code."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode if self.proc else None

    def kill(self):
        """SIGKILL: the hub gets no chance to clean up (for restart and durability tests)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self.start() if self.proc is None else self

    def __exit__(self, *exc):
        self.stop()
        self.db.close()

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    @property
    def port(self):
        return self.state["port"]

    @property
    def plain_port(self):
        return self.state["plain_port"]

    @property
    def ca(self):
        """The CA certificate (PEM) clients must trust."""
        return os.path.join(self.data_dir, certs.CA_CERT)

    @property
    def ca_der(self):
        """The same CA in DER, as MicroPython's ssl wants it."""
        return os.path.join(self.data_dir, certs.CA_DER)

    @property
    def hub_name(self):
        return hub_name(self.db)

    def add_device(self, identity):
        """Registers IDENTITY; returns its connection string (GatewayHostName=127.0.0.1)."""
        registry.add_device(self.db, identity)
        return registry.connection_string(self.db, identity)

    def key(self, identity):
        return registry.device_key(self.db, identity)

    def username(self, identity):
        return "%s/%s/?api-version=%s" % (self.hub_name, identity, API_VERSION)

    def token(self, identity, ttl=3600, key=None, expiry=None):
        """A SAS token for IDENTITY signed with its registry key (or KEY), as a device would mint it."""
        return sas.make_token(self.hub_name, identity, key or self.key(identity), expiry=expiry, ttl=ttl)

    def messages(self, device=None):
        """Stored messages, oldest first: dicts with id, device, time, topic, properties, payload (bytes)."""
        return store.read(self.db, device)

    def set_desired(self, identity, patch):
        """Patches the desired properties; the running hub pushes the patch within 0.1 s. Returns $version."""
        return twin.patch_desired(self.db, identity, patch)

    def twin(self, identity):
        return twin.document(self.db, identity)
