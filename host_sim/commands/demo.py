"""`microagent demo`: the main job on an embedded default, shown readably."""
import os

from host_sim.cli import UsageError
from host_sim.pretty import console, render_message
from host_sim.replay import ReplayError, replay_firmware

SAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))), "tests", "fixtures", "traces", "quiet-device.jsonl")


def register(subparsers):
    p = subparsers.add_parser(
        "demo", help="replay the bundled sample through the firmware engine on MicroPython",
        description="Replays a bundled sample trace (an idle sensor over four hours) through "
                    "the firmware engine inside the MicroPython unix port (64K heap) and shows "
                    "the aggregated messages it would send.")
    p.add_argument("--trace", default=SAMPLE, help="trace to replay (default: bundled sample)")
    p.add_argument("--window", type=float, default=3600.0, metavar="S",
                   help="window length in seconds (default 3600)")
    p.set_defaults(run=run)


def run(args):
    out = console()
    messages = []
    warnings = []
    out.print("[bold]microagent demo[/bold]: replaying %s through the firmware engine on the "
              "MicroPython unix port (heap 64K, windows of %g s)" % (args.trace, args.window))
    try:
        replay_firmware(args.trace, int(args.window * 1000), None, messages.append,
                        warnings.append, heap="64K")
    except ReplayError as exc:
        raise UsageError(str(exc))
    with open(args.trace) as f:
        raw = sum(1 for line in f if line.strip())
    for number, message in enumerate(messages, 1):
        render_message(out, message, "message %d of %d" % (number, len(messages)))
    for warning in warnings:
        out.print("[yellow]warning:[/yellow] %s" % warning)
    sent = sum(len(m.encode()) for m in messages)
    out.rule()
    out.print("%s raw events became %d messages (%s bytes, %d IoT Hub 4 KB blocks); one message "
              "per raw event would have cost %s messages."
              % ("{:,}".format(raw), len(messages), "{:,}".format(sent),
                 sum((len(m.encode()) + 4095) // 4096 for m in messages), "{:,}".format(raw)))
    return 0
