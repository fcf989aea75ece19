"""Delivery to the local IoT Hub over TLS: messages/s, bytes on the wire, and what a day of the
busy-gateway trace costs in IoT Hub meter units (4 KB blocks) against one message per raw event.
"""
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

from bench.report import progress, table
from host_sim.metering import blocks as metered_blocks
from hub_emulator.process import HubProcess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRACE = os.path.join(REPO, "tests", "fixtures", "traces", "busy-gateway.jsonl")
MICROAGENT = os.path.join(os.path.dirname(sys.executable), "microagent")
WINDOW_S = 60


class CountingProxy:
    """A TCP forwarder on 127.0.0.1 that counts the bytes each way (TLS records included)."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.up = 0
        self.down = 0
        self.port = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        self._ready.wait(10)

    def _run(self):
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _client(self, reader, writer):
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pipe(source, sink, upstream):
            try:
                while True:
                    data = await source.read(65536)
                    if not data:
                        break
                    if upstream:
                        self.up += len(data)
                    else:
                        self.down += len(data)
                    sink.write(data)
                    await sink.drain()
            except ConnectionError:
                pass
            finally:
                sink.close()
        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))

    def reset(self):
        self.up = self.down = 0


def _deliver(hub, proxy, engine, outbox):
    env = dict(os.environ, MICROAGENT_CONNECTION_STRING=hub.connection_string)
    before = len(hub.messages())
    proxy.reset()
    start = time.perf_counter()
    proc = subprocess.run([MICROAGENT, "replay", TRACE, "--engine", engine, "--window",
                           str(WINDOW_S), "--ca", hub.ca, "--port", str(proxy.port), "--outbox",
                           outbox], env=env, capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError("replay to the hub failed: %s" % proc.stderr[-500:])
    bodies = [m["payload"] for m in hub.messages()[before:]]
    return elapsed, bodies


def run():
    with open(TRACE) as f:
        raw = sum(1 for line in f if line.strip())
        f.seek(0)
        first = json.loads(f.readline())["t"]
        last = first
        for line in f:
            last = json.loads(line)["t"]
    per_day = 86400.0 / (last - first)
    rows = []
    meter = []
    with tempfile.TemporaryDirectory() as tmp:
        hub = HubProcess(os.path.join(tmp, "hub"), port=0, plain_port=None)
        hub.connection_string = hub.add_device("bench")
        with hub:
            proxy = CountingProxy(hub.port)
            for engine in ("firmware", "host"):
                progress("delivering the busy-gateway trace with the %s engine over TLS" % engine)
                elapsed, bodies = _deliver(hub, proxy, engine, os.path.join(tmp, engine + ".db"))
                payload = sum(len(b) for b in bodies)
                rows.append(["%s engine (replay + TLS + PUBACK)" % engine, len(bodies),
                             len(bodies) / elapsed, payload, proxy.up, proxy.up / payload])
                blocks = sum(metered_blocks(len(b)) for b in bodies)
                meter.append(["%s engine, windows of %d s" % (engine, WINDOW_S),
                              len(bodies) * per_day, blocks * per_day, raw * per_day,
                              raw / float(blocks)])
    table("Delivery of the busy-gateway trace (%d raw events, %.0f s) to the hub emulator"
          % (raw, last - first),
          ["engine", "messages", "messages/s", "JSON bytes", "bytes on the wire (up)",
           "wire/JSON"], rows)
    table("IoT Hub meter units for one simulated day of the busy gateway",
          ["sender", "messages/day", "4 KB blocks/day", "baseline: one message per raw event",
           "saving ×"], meter)
    return rows, meter
