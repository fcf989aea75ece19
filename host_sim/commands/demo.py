"""`microagent demo`: the main job on an embedded default, shown readably.

Starts the local IoT Hub emulator, registers a device, replays a bundled sample trace through the
firmware engine inside the MicroPython unix port, sends the messages over TLS with a SAS token,
and shows what the hub stored.
"""
import importlib.resources
import os
import tempfile

from host_sim.cli import UsageError
from host_sim.commands.replay import SENDING_HEAP
from host_sim.metering import blocks
from host_sim.pretty import console, render_message
from host_sim.replay import ReplayError, Uplink, replay_firmware

# tests/fixtures/traces/quiet-device.jsonl, shipped in the package.
SAMPLE = str(importlib.resources.files("host_sim").joinpath("data", "quiet-device.jsonl"))


def register(subparsers):
    p = subparsers.add_parser(
        "demo", help="run the agent on a bundled sample and show what the local hub received",
        description="Starts the local IoT Hub emulator, replays a bundled sample trace (an idle "
                    "sensor over four hours) through the firmware engine inside the MicroPython "
                    "unix port, sends the aggregated messages to the hub over TLS, and shows "
                    "what the hub stored.")
    p.add_argument("--trace", default=SAMPLE, help="trace to replay (default: bundled sample)")
    p.add_argument("--window", type=float, default=3600.0, metavar="S",
                   help="window length in seconds (default 3600)")
    p.set_defaults(run=run)


def run(args):
    from hub_emulator.process import HubProcess
    out = console()
    with tempfile.TemporaryDirectory(prefix="microagent-demo-") as tmp:
        hub = HubProcess(os.path.join(tmp, "hub"), port=0, plain_port=None)
        connection_string = hub.add_device("demo-sensor")
        with hub:
            out.print("[bold]microagent demo[/bold]")
            out.print("  hub emulator listening on 127.0.0.1:%d (TLS, CA %s)" % (hub.port, hub.ca))
            out.print("  device [bold]demo-sensor[/bold] registered; replaying %s through the "
                      "firmware engine on the MicroPython unix port, windows of %g s"
                      % (os.path.basename(args.trace), args.window))
            notes = []
            uplink = Uplink(connection_string, hub.ca, hub.port, timeout_s=30)
            try:
                status = replay_firmware(args.trace, int(args.window * 1000), None, None,
                                         notes.append, heap=SENDING_HEAP["micropython"], uplink=uplink,
                                         on_info=notes.append)
            except ReplayError as exc:
                raise UsageError(str(exc))
            for note in notes:
                out.print("  [dim]%s[/dim]" % note)
            stored = hub.messages()
        with open(args.trace) as f:
            raw = sum(1 for line in f if line.strip())
        for number, message in enumerate(stored, 1):
            render_message(out, message["payload"], "hub received message %d of %d from %s "
                           "($.mid %s)" % (number, len(stored), message["device"],
                                           message["properties"].get("$.mid")))
        sent = sum(len(m["payload"]) for m in stored)
        out.rule()
        out.print("%s raw events became %d messages (%s bytes, %d IoT Hub 4 KB blocks); one "
                  "message per raw event would have cost %s."
                  % ("{:,}".format(raw), len(stored), "{:,}".format(sent),
                     sum(blocks(len(m["payload"])) for m in stored), "{:,}".format(raw)))
    return status
