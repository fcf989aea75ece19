"""`microagent crosscheck TRACE`: the firmware engine (MicroPython) against the host engine."""
import sys

from host_sim import targets
from host_sim.cli import UsageError, check_option
from host_sim.commands.replay import RUNTIMES
from host_sim.crosscheck import crosscheck
from host_sim.replay import ReplayError, parse_heap
from microagent.compact import ENCODINGS
from microagent.encode import JSON
from microagent.trace import TraceError
from hub_emulator.printable import printable


def register(subparsers):
    p = subparsers.add_parser(
        "crosscheck", help="check the firmware and host engines against each other on a trace",
        description="Runs TRACE through the firmware engine on MicroPython and through the host "
                    "engine, and reports per window: identical where no cache overflowed, the "
                    "documented policy difference where one did. Exit 0 when every difference "
                    "is one the spec allows, 1 otherwise.")
    p.add_argument("trace", metavar="TRACE")
    p.add_argument("--window", type=float, default=7200.0, metavar="S",
                   help="window length in seconds (default 7200)")
    p.add_argument("--cache-size", type=int, default=256, metavar="N",
                   help="entries per cache for both engines (default 256)")
    p.add_argument("--heap", metavar="SIZE",
                   help="MicroPython heap for the firmware engine (default 1M; on "
                        "qemu-cortex-m3 the image's whole heap)")
    p.add_argument("--runtime", choices=RUNTIMES, default="micropython",
                   help="where the firmware engine runs (as for replay)")
    p.add_argument("--encoding", choices=ENCODINGS, default=JSON,
                   help="message encoding both engines write (compact messages are decoded "
                        "back to JSON before the comparison); default json")
    p.set_defaults(run=run)


def default_heap(runtime):
    """1M, or on the emulated board the whole heap compiled into its image."""
    if runtime == "qemu-cortex-m3":
        return str(targets.heap_of_image(runtime))
    return "1M"


def run(args):
    check_option("--window", args.window, positive=True)
    check_option("--cache-size", args.cache_size, 1)
    try:
        heap = parse_heap(args.heap or default_heap(args.runtime))
    except ValueError as exc:
        raise UsageError(str(exc))
    try:
        report = crosscheck(args.trace, int(round(args.window * 1000)), args.cache_size, heap,
                            args.runtime, progress=lambda text: print(text, file=sys.stderr),
                            encoding=args.encoding)
    except (ReplayError, TraceError) as exc:
        raise UsageError(str(exc))
    except OSError as exc:
        raise UsageError("cannot read trace %s: %s" % (args.trace, exc.strerror or exc))
    width = max([len(r[1]) for r in report.rows] + [9])
    print("%-6s  %-*s  %-17s  %s" % ("window", width, "collector", "verdict", "detail"))
    for index, collector, verdict, detail in report.rows:
        print(printable("%-6d  %-*s  %-17s  %s" % (index, width, collector, verdict, detail)))
    if report.ok:
        print("crosscheck passed: every difference is one the spec allows")
        return 0
    print("\ncrosscheck FAILED: %d unexplained difference(s)" % len(report.problems))
    for problem in report.problems:   # a trace's command lines may be quoted
        print(printable(problem))
    return 1
