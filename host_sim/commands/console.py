"""`microagent console`: a read-only web dashboard over the hub's store or the cloud store,
served locally."""
import signal

from host_sim.cloud.alerts.rules import RulesError, load_rules
from host_sim.cloud.alerts.sources import HubStore, SourceError
from host_sim.cli import (UsageError, add_store_option, check_option, interrupt_on_sigterm,
                          log_line, open_store_option)


def register(subparsers):
    p = subparsers.add_parser(
        "console", help="local web dashboard of the fleet, each device and its alerts",
        description="Serves a read-only dashboard over the hub emulator's store (--data) or the "
                    "cloud store (--store): the fleet (last seen, messages and 4 KB blocks per "
                    "day against an IoT Hub tier, dropped events) and each device (with --data "
                    "also processes, connections, logins, baseline failures, SBoM, system "
                    "information), and the alerts. Everything it shows is drawn by microagent "
                    "itself; nothing is loaded from the internet.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", metavar="HUBDIR", help="the hub's data directory")
    add_store_option(source, "the cloud store `microagent alerts --store` fills (a file, "
                             "sqlite:///path or postgresql://...; alone: $MICROAGENT_STORE)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0: a free one)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--rules", metavar="FILE",
                   help="with --data: your alert rules file (overrides defaults)")
    p.add_argument("--verbose", action="store_true", help="log every request to stderr")
    p.set_defaults(run=run)


def _hub_site(args):
    from host_sim.cloud.console.model import FleetModel
    from host_sim.cloud.console.server import HubSite
    try:
        rules = load_rules(args.rules)
        source = HubStore(args.data)
    except (RulesError, SourceError) as exc:
        raise UsageError(str(exc))
    model = FleetModel(source, rules)
    # the whole store is read once before serving, so no visitor waits for it
    model.refresh(progress=lambda n: log_line("console: read {:,} messages".format(n)))
    return HubSite(model), source


def _store_site(args):
    from host_sim.cloud.console.store_site import StoreSite
    if args.rules:
        raise UsageError("--rules goes with --data (the store holds the alerts already raised)")
    # the schema check is all it reads: pages ask the store for their rows on request
    store = open_store_option(args.store, create=False)
    return StoreSite(store), store


def run(args):
    from host_sim.cloud.console.server import ConsoleServer
    check_option("--port", args.port, 0, 65535)
    site, source = _hub_site(args) if args.data is not None else _store_site(args)
    try:
        server = ConsoleServer((args.host, args.port), site,
                               log=log_line if args.verbose else None)
    except OSError as exc:
        source.close()
        raise UsageError("cannot listen on %s:%d: %s" % (args.host, args.port,
                                                         exc.strerror or exc))
    signal.signal(signal.SIGTERM, interrupt_on_sigterm)
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
