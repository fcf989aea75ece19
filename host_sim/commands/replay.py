"""`microagent replay TRACE`: runs a trace through an engine, one JSON message per line."""
import sys

from host_sim.cli import UsageError
from host_sim.replay import ReplayError, parse_heap, replay_firmware, replay_host, write_line


def register(subparsers):
    p = subparsers.add_parser(
        "replay", help="replay a trace through the firmware or host engine",
        description="Reads a trace (JSON Lines of raw events) and prints each aggregated message "
                    "as one JSON line on stdout; warnings go to stderr.")
    p.add_argument("trace", metavar="TRACE", help="trace file (JSON Lines)")
    p.add_argument("--engine", choices=("firmware", "host"), default="firmware",
                   help="firmware: RTOS semantics (drop new when full); host: Linux semantics "
                        "(evict oldest). Default: firmware")
    p.add_argument("--runtime", choices=("micropython", "cpython"), default="micropython",
                   help="where the firmware engine runs (default: the MicroPython unix port)")
    p.add_argument("--window", type=float, default=7200.0, metavar="S",
                   help="window length in seconds (default 7200: the Medium priority interval)")
    p.add_argument("--cache-size", type=int, metavar="N",
                   help="entries per collector cache per window. Default: 256 on the host "
                        "engine; on the firmware engine 256 network entries and 16 process and "
                        "16 login entries, as a board keeps them")
    p.add_argument("--heap", default="64K", metavar="SIZE",
                   help="MicroPython heap cap (-X heapsize), default 64K")
    p.add_argument("--max-message-size", type=int, default=4096, metavar="BYTES",
                   help="largest message in bytes (default 4096, IoT Hub's billing block)")
    p.set_defaults(run=run)


def check_common(args):
    if args.window <= 0:
        raise UsageError("--window must be positive, got %s" % args.window)
    if args.cache_size is not None and args.cache_size < 1:
        raise UsageError("--cache-size must be at least 1, got %d" % args.cache_size)
    if args.max_message_size < 512:
        raise UsageError("--max-message-size must be at least 512, got %d" % args.max_message_size)
    try:
        args.heap = parse_heap(args.heap)
    except ValueError as exc:
        raise UsageError(str(exc))
    return int(round(args.window * 1000))


def _warn(text):
    print("warning: %s" % text, file=sys.stderr, flush=True)


def run(args):
    window_ms = check_common(args)
    try:
        if args.engine == "host":
            replay_host(args.trace, window_ms, args.cache_size, write_line, _warn,
                        args.max_message_size)
        else:
            replay_firmware(args.trace, window_ms, args.cache_size, write_line, _warn,
                            args.runtime, args.heap, args.max_message_size)
    except ReplayError as exc:
        raise UsageError(str(exc))
    return 0
