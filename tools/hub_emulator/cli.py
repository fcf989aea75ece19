"""The emulator's commands (serve, add-device, add-enrollment-group, set-desired, messages).

Shared by `python -m hub_emulator` and `microagent hub` (host_sim/commands/hub.py), which
translates UsageError into its own. The server (and with it `cryptography`) is imported only by serve.
"""
import argparse
import json
import logging
import os
import sys

from hub_emulator import bounded_json, codec, registry, store, twin, wire
from hub_emulator.database import FILE_NAME, open_db
from hub_emulator.printable import printable


class UsageError(Exception):
    """A bad argument or state the user can fix; one line, never a secret."""


def add_commands(subparsers):
    """Adds serve/add-device/set-desired/messages to an argparse subparsers object."""
    serve = subparsers.add_parser("serve", help="run the local IoT Hub (MQTT over TLS, SQLite under DIR)")
    _data(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8883, help="TLS port (default 8883; 0 picks a free one)")
    serve.add_argument("--plain-port", type=int, help="also listen without TLS on this port (0: a free one)")
    serve.add_argument("--max-packet", type=int, default=codec.DEFAULT_MAX_PACKET,
                       help="largest MQTT packet accepted, bytes (default %d)" % codec.DEFAULT_MAX_PACKET)
    serve.add_argument("--route", metavar="URL", nargs="?", const=os.environ.get("MICROAGENT_HUB_ROUTE", ""),
                       help="also send every stored message to Kafka (kafka://BOOTSTRAP/TOPIC) as IoT Hub "
                            "routes to Event Hubs; alone: the URL from $MICROAGENT_HUB_ROUTE; Event Hubs' "
                            "connection string from $MICROAGENT_KAFKA_CONNECTION_STRING")
    serve.add_argument("--dps-port", type=int, metavar="N",
                       help="also serve the Device Provisioning Service (MQTT over TLS) on this port "
                            "(0: a free one)")
    serve.add_argument("--dps-host", metavar="ADDRESS",
                       help="address the DPS listens on (default: --host; ::1 lets the hub and the "
                            "DPS both use port 8883)")
    serve.set_defaults(run=run_serve)

    group = subparsers.add_parser("add-enrollment-group",
                                  help="create a symmetric-key DPS enrollment group; prints its ID "
                                       "scope and group key (shown once)")
    _data(group)
    group.add_argument("name", metavar="NAME", help="enrollment group name")
    group.add_argument("--x509-ca", metavar="FILE",
                       help="an X.509 group instead: devices present a certificate signed by this CA "
                            "(PEM), CN = their registration id; prints the ID scope only")
    group.set_defaults(run=run_add_enrollment_group)

    add = subparsers.add_parser("add-device", help="register a device; prints its connection string")
    _data(add)
    add.add_argument("id", metavar="ID", help="device id, or DEVICE/MODULE for a module identity")
    x509_auth = add.add_mutually_exclusive_group()
    x509_auth.add_argument("--x509-ca", metavar="FILE",
                           help="the device authenticates with a client certificate signed by this CA "
                                "(PEM), CN = the device id")
    x509_auth.add_argument("--x509-thumbprint", metavar="HEX",
                           help="the device authenticates with the client certificate of this SHA-1 "
                                "or SHA-256 thumbprint")
    add.set_defaults(run=run_add_device)

    desired = subparsers.add_parser("set-desired", help="patch a device's desired twin properties")
    _data(desired)
    desired.add_argument("id", metavar="ID")
    desired.add_argument("pairs", metavar="KEY=VALUE", nargs="+",
                         help="VALUE is parsed as JSON when it parses, else taken as a string; null deletes")
    desired.set_defaults(run=run_set_desired)

    messages = subparsers.add_parser("messages", help="list the messages the hub stored")
    _data(messages)
    messages.add_argument("--device", metavar="ID", help="only this device's messages")
    messages.add_argument("--json", action="store_true", help="one JSON object per line")
    messages.set_defaults(run=run_messages)


def _data(parser):
    parser.add_argument("--data", metavar="DIR", required=True, help="the hub's data directory")


def _existing_db(data_dir):
    if not os.path.exists(os.path.join(data_dir, FILE_NAME)):
        raise UsageError("%s holds no hub data (run `hub add-device --data %s ID` first)" % (data_dir, data_dir))
    return open_db(data_dir)


def run_serve(args):
    import asyncio
    from hub_emulator import server
    if args.max_packet < 1024:
        raise UsageError("--max-packet %d is too small (at least 1024 bytes)" % args.max_packet)
    route = None
    if args.route is not None:
        from hub_emulator.route import KafkaRoute, RouteError
        try:
            route = KafkaRoute(args.data, args.route)
        except RouteError as exc:
            raise UsageError(str(exc)) from None
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_PrintableFormatter("%(asctime)s hub: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    try:
        asyncio.run(server.serve(args.data, args.host, args.port, args.plain_port, args.max_packet,
                                 announce=lambda line: print(line, flush=True),
                                 route=route.start() if route else None, dps_port=args.dps_port,
                                 dps_host=args.dps_host))
    except OSError as exc:
        raise UsageError("cannot listen on %s: %s" % (args.host, exc.strerror or exc)) from None
    return 0


class _PrintableFormatter(logging.Formatter):
    """Log lines quote what devices chose (client ids, topics, twin keys): escaped, so a device
    cannot act on the terminal the hub runs in nor forge a line."""

    def formatMessage(self, record):
        return printable(super().formatMessage(record))


def run_add_device(args):
    if args.x509_ca or args.x509_thumbprint:
        return _add_x509_device(args)
    db = open_db(args.data)
    try:
        registry.add_device(db, args.id)
        print(registry.connection_string(db, args.id))
    except registry.RegistryError as exc:
        raise UsageError(str(exc)) from None
    return 0


def run_add_enrollment_group(args):
    from hub_emulator import dps
    ca_pem = _read_ca(args.x509_ca) if args.x509_ca else None
    db = open_db(args.data)
    try:
        if ca_pem:
            print("IdScope=%s" % dps.add_x509_group(db, args.name, ca_pem.decode("ascii")))
            return 0
        scope, key = dps.add_group(db, args.name)
    except dps.EnrollmentError as exc:
        raise UsageError(str(exc)) from None
    print("IdScope=%s;SymmetricKey=%s" % (scope, key))
    return 0


def _read_ca(path):
    """The PEM text (bytes) of the CA certificate file PATH, checked to be one."""
    from cryptography import x509
    try:
        with open(path, "rb") as f:
            ca_pem = f.read()
        x509.load_pem_x509_certificate(ca_pem)
    except OSError as exc:
        raise UsageError("--x509-ca %s: %s" % (path, exc.strerror)) from None
    except ValueError:
        raise UsageError("--x509-ca %s: not a PEM certificate" % path) from None
    return ca_pem


def _add_x509_device(args):
    ca_pem = _read_ca(args.x509_ca) if args.x509_ca else None
    thumbprint = args.x509_thumbprint
    if thumbprint and (len(thumbprint) not in (40, 64)
                       or any(c not in "0123456789abcdefABCDEF" for c in thumbprint)):
        raise UsageError("--x509-thumbprint: expected 40 or 64 hex digits (SHA-1 or SHA-256)")
    db = open_db(args.data)
    try:
        registry.add_x509_device(db, args.id, ca_pem.decode("ascii") if ca_pem else None, thumbprint)
    except registry.RegistryError as exc:
        raise UsageError(str(exc)) from None
    print(registry.x509_connection_string(db, args.id))
    return 0


def parse_pairs(pairs):
    """["a=1", "b=x"] -> {"a": 1, "b": "x"}: JSON where the value parses as JSON, else the string."""
    patch = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError("%r is not KEY=VALUE" % pair)
        try:
            patch[key] = json.loads(value)
        except ValueError:
            patch[key] = value
        except RecursionError:
            raise UsageError("%s: value nested deeper than a twin allows (%d levels)"
                             % (key, twin.MAX_TWIN_DEPTH)) from None
    try:  # the limits IoT Hub puts on a twin patch, as for a device's reported patch
        twin.parse_patch(json.dumps(patch))
    except (twin.TwinError, RecursionError) as exc:
        raise UsageError("desired patch refused: %s" % (exc if isinstance(exc, twin.TwinError)
                                                        else "nested too deep")) from None
    return patch


def run_set_desired(args):
    patch = parse_pairs(args.pairs)
    db = _existing_db(args.data)
    if not registry.is_registered(db, args.id):
        raise UsageError("device %r is not registered in %s" % (args.id, args.data))
    try:
        version = twin.patch_desired(db, args.id, patch)
    except twin.TwinError as exc:
        raise UsageError("desired patch refused: %s" % exc) from None
    print(printable("%s desired $version %d: %s (a running hub pushes it to the device if connected)"
                    % (args.id, version, json.dumps(patch))))
    return 0


def _cut(text, width):
    return text if len(text) <= width else text[:width - 3] + "..."


def _summary(payload, body):
    """A security message as its events (`ProcessCreate[3] Login[1]`: name[payload items]), else the text."""
    events = body.get("Events") if isinstance(body, dict) else None
    if isinstance(events, list) and events and all(
            isinstance(e, dict) and "Name" in e and isinstance(e.get("Payload") or [], list) for e in events):
        return " ".join("%s[%d]" % (e["Name"], len(e.get("Payload") or ())) for e in events)
    return payload.decode("utf-8", errors="replace").replace("\n", " ")


def _readable(messages):
    """(message, body) pairs: a compact body decoded to the JSON message it stands for; one that
    cannot be decoded is named on stderr in one line and skipped."""
    for m in messages:
        try:
            yield m, wire.read_body(m["payload"], m["properties"], store.decode_body)
        except wire.DecodeError as exc:
            _skipped(m, exc)


def _skipped(message, why):
    print(printable("hub_emulator: message %d from %s skipped: %s" % (message["id"], message["device"], why)),
          file=sys.stderr)


def run_messages(args):
    messages = store.read(_existing_db(args.data), args.device)
    if args.json:
        for m, body in _readable(messages):
            try:
                line = bounded_json.dumps({"id": m["id"], "device": m["device"], "time": m["time"],
                                           "topic": m["topic"], "properties": m["properties"],
                                           "body": body})
            except ValueError:  # a compact body's NaN or Infinity: no JSON value stands for it
                _skipped(m, "a number is not finite (NaN or Infinity)")
                continue
            print(line)
        return 0
    rows = [("ID", "TIME", "DEVICE", "BYTES", "PROPERTIES", "BODY")]
    for m, body in _readable(messages):
        properties = " ".join("%s=%s" % item for item in sorted(m["properties"].items()))
        rows.append((str(m["id"]), m["time"], m["device"], str(len(m["payload"])),
                     _cut(printable(properties), 48), _cut(printable(_summary(m["payload"], body)), 60)))
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.rjust(w) if i in (0, 3) else cell.ljust(w)
                        for i, (cell, w) in enumerate(zip(row, widths))).rstrip())
    print("%d message%s" % (len(messages), "" if len(messages) == 1 else "s"))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m hub_emulator", description="Local Azure IoT Hub emulator.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_commands(subparsers)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except UsageError as exc:
        print("hub_emulator: error: %s" % printable(exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
