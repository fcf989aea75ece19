"""`microagent run`: the host agent on this Linux machine."""
import signal
import sys

from host_sim.agent import EVENT_COLLECTORS, TRIGGERED, HostAgent, Options
from host_sim.cli import UsageError
from host_sim.replay import ReplayError, agent_id, write_line
from host_sim.uplink_options import add_uplink_arguments, uplink_of
from microagent.config import Config

ALL = list(EVENT_COLLECTORS) + list(TRIGGERED)


def register(subparsers):
    p = subparsers.add_parser(
        "run", help="run the host agent: live Linux collectors, aggregated, sent or printed",
        description="Collects processes (netlink), connections (sock_diag), DNS (raw socket), "
                    "logins (utmp/wtmp/btmp, auth log), system information, CIS baseline and "
                    "SBoM on this machine, aggregates them per window and sends the messages "
                    "to IoT Hub (--connection-string), your broker (--broker), or prints them "
                    "(--output -). Needs root for netlink and raw sockets.")
    p.add_argument("--once", action="store_true",
                   help="collect for --seconds, send one window and the triggered collectors, "
                        "and exit")
    p.add_argument("--seconds", type=float, default=5.0, help="with --once: how long (default 5)")
    p.add_argument("--output", metavar="FILE",
                   help="write messages as JSON lines to FILE ('-': stdout) instead of sending")
    p.add_argument("--window", type=float, metavar="S",
                   help="window length in seconds (default: from CollectorsCore_PriorityIntervals"
                        " and NetworkActivity_MessageFrequency, 120 minutes; the twin can "
                        "change it)")
    p.add_argument("--cache-size", type=int, default=256, metavar="N")
    p.add_argument("--collectors", default=",".join(ALL),
                   help="comma-separated, from %s (default all)" % ", ".join(ALL))
    p.add_argument("--process-mode", choices=("Auto", "Netlink", "Polling"), default="Auto",
                   help="Process_Mode (default Auto: netlink, else /proc polling)")
    p.add_argument("--root", default="/", help="root of the filesystem to read (default /)")
    add_uplink_arguments(p.add_argument_group("sending"),
                         "your own broker: mqtts://user:pass@host:port")
    p.set_defaults(run=run)


def _log(text):
    print("microagent: %s" % text, file=sys.stderr, flush=True)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run(args):
    names = [n.strip() for n in args.collectors.split(",") if n.strip()]
    unknown = [n for n in names if n not in ALL]
    if unknown:
        raise UsageError("--collectors: unknown %s (choose from %s)"
                         % (", ".join(unknown), ", ".join(ALL)))
    if (args.window is not None and args.window <= 0) or args.cache_size < 1 or args.seconds <= 0:
        raise UsageError("--window and --seconds must be positive, --cache-size at least 1")
    uplink = uplink_of(args)
    if (uplink is not None) == bool(args.output):
        raise UsageError("give --output FILE (or -) to print, or --connection-string/--broker "
                         "to send")
    options = Options(root=args.root, process_mode=args.process_mode, window_s=args.window,
                      cache_size=args.cache_size, collectors=names)
    config = Config()
    config.apply({"Process_CacheSize": args.cache_size,
                  "NetworkActivity_CacheSize": args.cache_size, "Login_CacheSize": args.cache_size,
                  "Process_Mode": args.process_mode})
    agent = None
    transport = outbox = out = None
    if uplink is not None:
        try:
            outbox, transport = uplink.open_transport(
                _log, config, on_config=lambda applied: agent and agent.on_config(applied))
        except ReplayError as exc:
            raise UsageError(str(exc))
        send = lambda text: transport.send(text.encode())  # noqa: E731
    elif args.output == "-":
        send = write_line
    else:
        try:
            out = open(args.output, "a")
        except OSError as exc:
            raise UsageError("--output %s: %s" % (args.output, exc.strerror))
        send = lambda text: write_line(text, out)  # noqa: E731
    agent = HostAgent(options, agent_id(args.root), send, _log, config)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # systemd stops a service with SIGTERM
    try:
        agent.run(args.seconds if args.once else None)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        if transport is not None:
            transport.flush(uplink.timeout_s)
            transport.close()
            outbox.close()
        if out is not None:
            out.close()
    _log("%d messages" % agent.messages)
    return 0
