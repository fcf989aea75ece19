"""The command-line options that send messages to IoT Hub or a broker, shared by `replay` and
`run`, and the Uplink they describe."""
import os

from host_sim.cli import UsageError
from host_sim.replay import Uplink


def add_uplink_arguments(group, broker_help):
    group.add_argument("--connection-string", metavar="CS",
                       help="device connection string (default, unless --broker: "
                            "$MICROAGENT_CONNECTION_STRING, which keeps the key off the command "
                            "line)")
    group.add_argument("--ca", metavar="FILE", help="CA certificate (PEM) of the hub's server "
                                                    "certificate")
    group.add_argument("--port", type=int, metavar="N", help="hub port (default 8883)")
    group.add_argument("--broker", metavar="URL", nargs="?",
                       const=os.environ.get("MICROAGENT_BROKER", ""),
                       help=broker_help + "; give --broker alone to read the URL from "
                            "$MICROAGENT_BROKER (keeps the password off the command line)")
    group.add_argument("--outbox", metavar="FILE",
                       help="the host agent's persistent outbox (default "
                            "~/.local/state/microagent/outbox.db)")
    group.add_argument("--timeout", type=float, default=60.0, metavar="S",
                       help="how long to wait for the hub to acknowledge (default 60)")


def uplink_of(args):
    """The Uplink the options name, or None when nothing is to be sent."""
    if args.broker == "":
        raise UsageError("--broker needs a URL (or $MICROAGENT_BROKER)")
    connection_string = args.connection_string
    if connection_string is None and args.broker is None:
        connection_string = os.environ.get("MICROAGENT_CONNECTION_STRING")
    if not (connection_string or args.broker):
        if args.ca:
            raise UsageError("--ca needs --connection-string (or --broker)")
        return None
    if connection_string and args.broker:
        raise UsageError("give --connection-string or --broker, not both")
    if connection_string and not args.ca:
        raise UsageError("--connection-string needs --ca FILE (the hub's CA certificate)")
    if args.ca and not os.path.isfile(args.ca):
        raise UsageError("--ca %s: no such file" % args.ca)
    return Uplink(connection_string, args.ca, args.port, args.broker, args.outbox, args.timeout)
