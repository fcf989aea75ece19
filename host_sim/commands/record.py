"""`microagent record`: run the live event collectors for a while and write their raw events as a
trace (docs/spec.md section 1, JSON lines in time order) that `microagent replay` can read."""
import json
import logging
import sys
import threading
import time

from host_sim.cli import UsageError, check_option, write_output
from host_sim.agent import EVENT_COLLECTORS, Options

# record's names for the agent's event collectors (built from the agent's Options)
COLLECTORS = {
    "process": EVENT_COLLECTORS["Process"],
    "network": EVENT_COLLECTORS["NetworkActivity"],
    "dns": EVENT_COLLECTORS["DNS"],
    "login": EVENT_COLLECTORS["Login"],
}


def register(subparsers):
    parser = subparsers.add_parser(
        "record", help="record a trace of raw events from the live Linux collectors",
        description="Runs the event-based collectors for --seconds and writes what they saw as "
                    "a trace: one raw event per line, in time order.")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long (default 10)")
    parser.add_argument("--collectors", default=",".join(COLLECTORS),
                        help="comma-separated, from: %s (default all)" % ", ".join(COLLECTORS))
    parser.add_argument("--process-mode", choices=("Auto", "Audit", "Netlink", "Polling"),
                        default="Auto",
                        help="Process_Mode (default Auto)")
    parser.add_argument("--root", default="/", help="root for /proc, /etc, /var/log (default /)")
    parser.add_argument("--output", default="-", help="trace file (default - for stdout)")
    parser.set_defaults(run=run)


def run(args):
    names = [n.strip() for n in args.collectors.split(",") if n.strip()]
    unknown = [n for n in names if n not in COLLECTORS]
    if unknown or not names:
        raise UsageError("--collectors: unknown %s (choose from %s)"
                         % (", ".join(unknown) or "(none given)", ", ".join(COLLECTORS)))
    check_option("--seconds", args.seconds, positive=True)
    logging.basicConfig(level=logging.WARNING, format="microagent: %(message)s")
    events, lock = [], threading.Lock()

    def emit(event):
        with lock:
            events.append(event)

    options = Options(root=args.root, process_mode=args.process_mode)
    running, started = [], []
    for name in names:
        collector = COLLECTORS[name](emit, options)
        try:
            collector.start()
        except OSError as exc:
            print("microagent: %s collector not started: %s" % (name, exc), file=sys.stderr)
            continue
        running.append(collector)
        started.append(name)
    if not running:
        return 1
    print("microagent: recording for %g s" % args.seconds, file=sys.stderr, flush=True)
    try:
        time.sleep(args.seconds)
    finally:
        for collector in running:
            collector.stop()
    for name, collector in zip(started, running):
        print("microagent: %s: %s" % (name, ", ".join(
            "%s %s" % item for item in sorted(collector.stats.items()))), file=sys.stderr)
    events.sort(key=lambda e: e["t"])
    write_output(args.output, "".join(json.dumps(e) + "\n" for e in events))
    return 0
