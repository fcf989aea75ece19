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
    group.add_argument("--cert", metavar="FILE",
                       help="client certificate (PEM) for an x509=true connection string (host engine)")
    group.add_argument("--key", metavar="FILE", help="the client certificate's private key (PEM)")
    group.add_argument("--broker", metavar="URL", nargs="?",
                       const=os.environ.get("MICROAGENT_BROKER", ""),
                       help=broker_help + "; give --broker alone to read the URL from "
                            "$MICROAGENT_BROKER (keeps the password off the command line)")
    group.add_argument("--dps", action="store_true",
                       help="provision through the Device Provisioning Service with "
                            "$MICROAGENT_DPS (GlobalEndpoint=HOST[:PORT];IdScope=...;"
                            "RegistrationId=...;SymmetricKey=... or CertFile=...;KeyFile=...); the "
                            "assignment is cached beside "
                            "the outbox, --ca and --port are the DPS's and the hub's")
    group.add_argument("--outbox", metavar="FILE",
                       help="the host agent's persistent outbox (default "
                            "~/.local/state/microagent/outbox.db)")
    group.add_argument("--timeout", type=float, default=60.0, metavar="S",
                       help="how long to wait for the hub to acknowledge (default 60)")


def uplink_of(args):
    """The Uplink the options name, or None when nothing is to be sent."""
    if args.broker == "":
        raise UsageError("--broker needs a URL (or $MICROAGENT_BROKER)")
    if args.dps:
        return _dps_uplink(args)
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
    if bool(args.cert) != bool(args.key):
        raise UsageError("--cert and --key go together")
    for option, path in (("--cert", args.cert), ("--key", args.key)):
        if path and not os.path.isfile(path):
            raise UsageError("%s %s: no such file" % (option, path))
    return Uplink(connection_string, args.ca, args.port, args.broker, args.outbox, args.timeout,
                  cert=(args.cert, args.key) if args.cert else None)


def _dps_uplink(args):
    from host_sim.provisioning import ProvisioningError, client_cert, settings_of
    if args.connection_string or args.broker is not None:
        raise UsageError("give --dps, --connection-string or --broker, not two of them")
    if args.cert or args.key:
        raise UsageError("with --dps the certificate is $MICROAGENT_DPS's CertFile and KeyFile, "
                         "not --cert/--key")
    text = os.environ.get("MICROAGENT_DPS")
    if not text:
        raise UsageError("--dps needs $MICROAGENT_DPS (GlobalEndpoint=HOST[:PORT];IdScope=...;"
                         "RegistrationId=...;SymmetricKey=...)")
    try:
        cert = client_cert(settings_of(text))
    except ProvisioningError as exc:
        raise UsageError(str(exc))
    if not args.ca:
        raise UsageError("--dps needs --ca FILE (the CA of the DPS's and the hub's certificates)")
    if not os.path.isfile(args.ca):
        raise UsageError("--ca %s: no such file" % args.ca)
    return Uplink(None, args.ca, args.port, None, args.outbox, args.timeout, dps=text, cert=cert)
