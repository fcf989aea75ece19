"""`microagent replay TRACE`: runs a trace through an engine, one message per line (JSON, or
base64 of a compact message)."""

from microagent.compact import ENCODINGS
from microagent.encode import JSON

from microagent.encode import MAX_MESSAGE_SIZE, MIN_MESSAGE_SIZE

from host_sim.cli import UsageError, check_option, log_line
from host_sim.replay import (ReplayError, parse_heap, replay_firmware, replay_host,
                             replay_host_to_hub, write_line)
from host_sim.uplink_options import add_uplink_arguments, uplink_of

RUNTIMES = ("micropython", "micropython32", "qemu-cortex-m3", "cpython")

# The firmware engine's heap by runtime. The 64-bit unix port loads the engine's code into its
# heap (39 KB of bytecode with 8-byte pointers, the trace checks included); the 32-bit targets
# have the agent frozen, its code in flash as on a board, so a board's 64K holds the same caches
# with room to spare.
DEFAULT_HEAP = {"micropython": "96K", "micropython32": "64K", "qemu-cortex-m3": "64K",
                "cpython": "64K"}
# Heap for the firmware engine when it also holds a TLS MQTT session, twin and outbox: about
# 1.5 times the least that delivers the busy-gateway sample at 60 s windows (208K on the 64-bit
# port, 112K on micropython32), because a reconnect re-allocates the TLS buffers in a heap that
# the outage left fragmented (224K on the 64-bit port failed there in CI).
SENDING_HEAP = {"micropython": "320K", "micropython32": "160K"}


def register(subparsers):
    p = subparsers.add_parser(
        "replay", help="replay a trace through the firmware or host engine",
        description="Reads a trace (JSON Lines of raw events) and prints each aggregated message "
                    "as one line on stdout (JSON, or base64 with --encoding compact: "
                    "`microagent decode` turns those back into JSON); warnings go to stderr.")
    p.add_argument("trace", metavar="TRACE", help="trace file (JSON Lines)")
    p.add_argument("--engine", choices=("firmware", "host"), default="firmware",
                   help="firmware: RTOS semantics (drop new when full); host: Linux semantics "
                        "(evict oldest). Default: firmware")
    p.add_argument("--runtime", choices=RUNTIMES, default="micropython",
                   help="where the firmware engine runs: the MicroPython unix port (default), "
                        "the 32-bit builds of `make firmware` with the agent frozen "
                        "(micropython32: i386 unix port; qemu-cortex-m3: the emulated board), "
                        "or CPython")
    p.add_argument("--window", type=float, default=7200.0, metavar="S",
                   help="window length in seconds (default 7200: the Medium priority interval)")
    p.add_argument("--cache-size", type=int, metavar="N",
                   help="entries per collector cache per window. Default: 256 on the host "
                        "engine; on the firmware engine 256 network entries and 16 process and "
                        "16 login entries, as a board keeps them")
    p.add_argument("--heap", metavar="SIZE",
                   help="MicroPython heap cap (-X heapsize; on qemu-cortex-m3 a ballast taken "
                        "from the image's 140K heap): default 96K on micropython (the 64-bit port "
                        "holds the code in its heap), 64K on the 32-bit targets; when sending to a "
                        "hub %s on micropython, %s on micropython32"
                        % (SENDING_HEAP["micropython"], SENDING_HEAP["micropython32"]))
    p.add_argument("--max-message-size", type=int, default=4096, metavar="BYTES",
                   help="largest message in bytes (default 4096, IoT Hub's billing block)")
    p.add_argument("--encoding", choices=ENCODINGS, default=JSON,
                   help="message encoding: json (the spec's, default) or compact (CBOR, "
                        "docs/compact-encoding.md)")
    hub = p.add_argument_group(
        "sending", "send the messages instead of printing them (both engines; the firmware "
                   "engine sends from inside MicroPython)")
    add_uplink_arguments(hub, "host engine only: your own broker, mqtts://user:pass@host:port")
    p.set_defaults(run=run)


def check_common(args):
    check_option("--window", args.window, positive=True)
    check_option("--cache-size", args.cache_size, 1)
    check_option("--max-message-size", args.max_message_size, MIN_MESSAGE_SIZE, MAX_MESSAGE_SIZE,
                 why="IoT Hub's 256 KB limit")
    try:
        args.heap = parse_heap(args.heap or DEFAULT_HEAP[getattr(args, "runtime", "micropython")])
    except ValueError as exc:
        raise UsageError(str(exc))
    return int(round(args.window * 1000))


def _warn(text):
    log_line("warning: " + text)


def _info(text):
    log_line("info: " + text)


def run(args):
    try:
        with open(args.trace, "rb"):
            pass
    except OSError as exc:
        raise UsageError("cannot read trace %s: %s" % (args.trace, exc.strerror))
    uplink = uplink_of(args)
    if uplink is not None and args.heap is None:
        args.heap = SENDING_HEAP.get(args.runtime)
    window_ms = check_common(args)
    try:
        if args.engine == "host" and uplink is not None:
            return replay_host_to_hub(args.trace, window_ms, args.cache_size, uplink, _warn,
                                      _info, args.max_message_size, encoding=args.encoding)
        if args.engine == "host":
            replay_host(args.trace, window_ms, args.cache_size, write_line, _warn,
                        args.max_message_size, encoding=args.encoding)
            return 0
        return replay_firmware(args.trace, window_ms, args.cache_size, write_line, _warn,
                               args.runtime, args.heap, args.max_message_size, uplink=uplink,
                               on_info=_info, encoding=args.encoding)
    except ReplayError as exc:
        raise UsageError(str(exc))
