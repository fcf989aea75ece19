"""`microagent console`: a read-only web dashboard over the hub's store, served locally."""
import signal

from host_sim.cloud.alerts.rules import RulesError, load_rules
from host_sim.cloud.alerts.sources import HubStore, SourceError
from host_sim.cli import UsageError, log_line


def register(subparsers):
    p = subparsers.add_parser(
        "console", help="local web dashboard of the fleet, each device and its alerts",
        description="Serves a read-only dashboard over the hub emulator's store: the fleet "
                    "(last seen, messages and 4 KB blocks per day against an IoT Hub tier, "
                    "dropped events) and each device (processes, connections, logins, baseline "
                    "failures, SBoM, system information, alerts). Everything it shows is drawn "
                    "by microagent itself; nothing is loaded from the internet.")
    p.add_argument("--data", metavar="HUBDIR", required=True, help="the hub's data directory")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0: a free one)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--rules", metavar="FILE", help="your alert rules file (overrides defaults)")
    p.add_argument("--verbose", action="store_true", help="log every request to stderr")
    p.set_defaults(run=run)


def run(args):
    from host_sim.cloud.console.model import FleetModel
    from host_sim.cloud.console.server import ConsoleServer
    if not 0 <= args.port <= 65535:
        raise UsageError("--port must be 0..65535, got %d" % args.port)
    try:
        rules = load_rules(args.rules)
        source = HubStore(args.data)
    except (RulesError, SourceError) as exc:
        raise UsageError(str(exc))
    model = FleetModel(source, rules)
    # the whole store is read once before serving, so no visitor waits for it
    model.refresh(progress=lambda n: log_line("console: read {:,} messages".format(n)))
    try:
        server = ConsoleServer((args.host, args.port), model,
                               log=log_line if args.verbose else None)
    except OSError as exc:
        source.close()
        raise UsageError("cannot listen on %s:%d: %s" % (args.host, args.port,
                                                         exc.strerror or exc))
    signal.signal(signal.SIGTERM, _interrupt)
    host, port = server.server_address[:2]
    print("console: http://%s:%d/ (read only; Ctrl-C to stop)" % (host, port), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        source.close()
    return 0


def _interrupt(signum, frame):
    """SIGTERM stops the server like Ctrl-C does."""
    raise KeyboardInterrupt
