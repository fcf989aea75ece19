"""`microagent run`: the host agent on this Linux machine."""
import json
import signal

from host_sim.agent import EVENT_COLLECTORS, TRIGGERED, HostAgent, Options
from host_sim.cli import UsageError, check_option, interrupt_on_sigterm, log_line
from host_sim.private_files import open_private
from host_sim.replay import ReplayError, agent_id, write_line
from host_sim.uplink_options import add_uplink_arguments, uplink_of
from microagent.config import ENCODING_CHOICES, MESSAGE_ENCODING, Config
from microagent.decode import body_of_line

ALL = list(EVENT_COLLECTORS) + list(TRIGGERED)
CACHE_KEYS = ("Process_CacheSize", "NetworkActivity_CacheSize", "Login_CacheSize")


def register(subparsers):
    p = subparsers.add_parser(
        "run", help="run the host agent: live Linux collectors, aggregated, sent or printed",
        description="Collects processes (audit, netlink), connections (sock_diag), DNS (raw "
                    "socket), logins (utmp/wtmp/btmp, auth log), system information, CIS "
                    "baseline and SBoM on this machine, aggregates them per window and sends the messages "
                    "to IoT Hub (--connection-string), your broker (--broker), or prints them "
                    "(--output -). Needs root, or the capabilities of docs/collectors.md "
                    "(the systemd unit grants them).")
    p.add_argument("--once", action="store_true",
                   help="collect for --seconds, send one window and the triggered collectors, "
                        "and exit")
    p.add_argument("--seconds", type=float, default=5.0, help="with --once: how long (default 5)")
    p.add_argument("--output", metavar="FILE",
                   help="write messages as lines to FILE ('-': stdout) instead of sending: "
                        "JSON, or base64 with --encoding compact")
    p.add_argument("--window", type=float, metavar="S",
                   help="one window length in seconds for every event collector (default: each "
                        "one's from CollectorsCore_PriorityIntervals and its "
                        "<Collector>_MessageFrequency, 120 minutes; the twin can change them)")
    p.add_argument("--config", metavar="FILE",
                   help="a JSON object of configuration keys, named as the Defender micro agent's "
                        "(a module twin's desired properties carry over); the options below "
                        "override it, the twin overrides both while running")
    p.add_argument("--cache-size", type=int, metavar="N",
                   help="Process_, NetworkActivity_ and Login_CacheSize (default 256)")
    p.add_argument("--collectors", default=",".join(ALL),
                   help="comma-separated, from %s (default all)" % ", ".join(ALL))
    p.add_argument("--process-mode", choices=("Auto", "Audit", "Netlink", "Polling"),
                   help="Process_Mode (default Auto: audit, else netlink, else /proc polling)")
    p.add_argument("--encoding", choices=[c.lower() for c in ENCODING_CHOICES],
                   help="%s: json (the spec's, default) or compact (CBOR, "
                        "docs/compact-encoding.md)" % MESSAGE_ENCODING)
    p.add_argument("--root", default="/", help="root of the filesystem to read (default /)")
    add_uplink_arguments(p.add_argument_group("sending"),
                         "your own broker: mqtts://user:pass@host:port")
    p.set_defaults(run=run)


def _log(text):
    log_line("microagent: " + text)


def _apply_file(config, path):
    """Applies the configuration file PATH; UsageError naming the file (and line or key)."""
    try:
        with open(path) as f:
            desired = json.load(f)
    except OSError as exc:
        raise UsageError("--config %s: %s" % (path, exc.strerror))
    except ValueError as exc:
        where = " line %d" % exc.lineno if hasattr(exc, "lineno") else ""
        raise UsageError("%s%s: not JSON (%s)" % (path, where, getattr(exc, "msg", exc)))
    except RecursionError:
        raise UsageError("%s: not a configuration (nested too deep)" % path) from None
    if not isinstance(desired, dict):
        raise UsageError("%s: expected a JSON object of configuration keys" % path)
    _, rejected = config.apply(desired)
    if rejected:
        raise UsageError("%s: %s" % (path, "; ".join(
            "key %s: %s" % (key, reason) for key, reason in sorted(rejected.items()))))


def run(args):
    names = [n.strip() for n in args.collectors.split(",") if n.strip()]
    unknown = [n for n in names if n not in ALL]
    if unknown:
        raise UsageError("--collectors: unknown %s (choose from %s)"
                         % (", ".join(unknown), ", ".join(ALL)))
    check_option("--window", args.window, positive=True)
    check_option("--seconds", args.seconds, positive=True)
    uplink = uplink_of(args)
    if (uplink is not None) == bool(args.output):
        raise UsageError("give --output FILE (or -) to print, or --connection-string/--broker "
                         "to send")
    config = Config()
    if args.config:
        _apply_file(config, args.config)
    flags = {}
    if args.cache_size is not None:
        for key in CACHE_KEYS:
            flags[key] = args.cache_size
    if args.process_mode is not None:
        flags["Process_Mode"] = args.process_mode
    if args.encoding is not None:
        flags[MESSAGE_ENCODING] = args.encoding.capitalize()
    _, rejected = config.apply(flags)
    if rejected:
        raise UsageError("--cache-size: %s" % rejected[CACHE_KEYS[0]])
    options = Options(root=args.root, process_mode=config["Process_Mode"], window_s=args.window,
                      polling_interval_s=config["Process_PollingInterval"] / 1e6,
                      cache_size=config[CACHE_KEYS[0]], collectors=names)
    agent = None
    transport = outbox = out = None
    if uplink is not None:
        try:
            outbox, transport = uplink.open_transport(
                _log, config, on_config=lambda applied: agent and agent.on_config(applied))
        except ReplayError as exc:
            raise UsageError(str(exc))
        send = lambda line: transport.send(body_of_line(line))  # noqa: E731
    elif args.output == "-":
        send = write_line
    else:
        try:
            out = open_private(args.output, "a")   # the agent's messages: the owner's alone
        except OSError as exc:
            raise UsageError("--output %s: %s" % (args.output, exc.strerror))
        send = lambda text: write_line(text, out)  # noqa: E731
    agent = HostAgent(options, agent_id(args.root), send, _log, config)
    previous = signal.signal(signal.SIGTERM, interrupt_on_sigterm)  # systemd stops a service with SIGTERM
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
