"""`microagent alerts`: the alert rules over what devices sent (the hub emulator's store, or an
MQTT broker the messages are forwarded to); a table, or JSON lines."""
import json
import os
import signal
import threading

from host_sim.cloud.alerts.rules import RulesError, load_rules
from host_sim.cloud.alerts import state
from host_sim.cloud.alerts.run import Evaluation
from host_sim.cloud.alerts.sources import HubStore, MqttSource, SourceError
from host_sim.cli import UsageError, log_line


def register(subparsers):
    p = subparsers.add_parser(
        "alerts", help="security alerts from the messages devices sent (rules as data)",
        description="Evaluates the alert rules (defaults shipped with microagent, overridden by "
                    "--rules FILE) over each device's messages and prints the alerts: device, "
                    "rule, severity, first and last time, evidence and what to do.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", metavar="HUBDIR", help="the hub emulator's data directory")
    source.add_argument("--broker", metavar="URL", nargs="?",
                        const=os.environ.get("MICROAGENT_ALERTS_BROKER", ""),
                        help="follow an MQTT broker the messages are forwarded to: "
                             "mqtt[s]://user:password@host:port; give --broker alone to read "
                             "the URL from $MICROAGENT_ALERTS_BROKER (keeps the password off "
                             "the command line)")
    p.add_argument("--ca", metavar="FILE", help="CA certificate (PEM) of the broker (mqtts)")
    p.add_argument("--topic", default="devices/+/messages/events/#",
                   help="topic filter on the broker (default: every device's telemetry)")
    p.add_argument("--rules", metavar="FILE", help="your rules file; it overrides the defaults")
    p.add_argument("--state", metavar="FILE",
                   help="with --broker: keep what the rules learned of each device and the "
                        "alerts raised in FILE (0600), so a restart neither learns again nor "
                        "forgets them")
    p.add_argument("--json", action="store_true", help="one JSON object per alert and line")
    p.add_argument("--follow", action="store_true",
                   help="keep evaluating messages as they arrive (always on with --broker)")
    p.set_defaults(run=run)


def _table(alerts):
    rows = [("SEVERITY", "DEVICE", "RULE", "FIRST", "LAST", "COUNT", "ALERT")]
    for a in alerts:
        d = a.as_dict()
        rows.append((d["severity"], d["device"], d["rule"], d["first"], d["last"],
                     str(d["count"]), d["title"]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for row in rows:
        lines.append("  ".join(cell.rjust(w) if i == 5 else cell.ljust(w)
                               for i, (cell, w) in enumerate(zip(row, widths)))
                     + "  " + row[-1])
    return lines


def _printer(as_json):
    def show(alerts, status=None):
        for alert in alerts:
            if as_json:
                record = alert.as_dict()
                if status:
                    record["status"] = status
                print(json.dumps(record), flush=True)
            else:
                d = alert.as_dict()
                print("%s %s %s %s: %s -- %s" % (status or "", d["severity"], d["device"],
                                                 d["rule"], d["title"], d["what_to_do"]),
                      flush=True)
    return show


def run(args):
    try:
        rules = load_rules(args.rules)
    except RulesError as exc:
        raise UsageError(str(exc))
    if args.data is None and not args.broker:
        raise UsageError("--broker needs a URL (or $MICROAGENT_ALERTS_BROKER)")
    if args.ca and not os.path.isfile(args.ca):
        raise UsageError("--ca %s: no such file" % args.ca)
    if args.state and args.data:
        raise UsageError("--state goes with --broker: the hub store is read from its start "
                         "each time")
    evaluation = Evaluation(rules, on_skip=lambda line: log_line("warning: " + line))
    if args.state:
        try:
            if state.load(args.state, evaluation.engine):
                log_line("alerts: state from %s: %d devices, %d alerts"
                         % (args.state, len(evaluation.engine.devices),
                            len(evaluation.engine.alerts)))
        except state.StateError as exc:
            raise UsageError(str(exc))
    try:
        source = HubStore(args.data) if args.data else MqttSource(
            args.broker, args.ca, args.topic, log=log_line).start()
    except SourceError as exc:
        raise UsageError(str(exc))
    try:
        if args.data and not args.follow:
            alerts = evaluation.batch(source.read_new())
            if args.json:
                _printer(True)(alerts)
            else:
                for line in _table(alerts):
                    print(line)
                print("%d alert%s from %d message%s of %d device%s%s" % (
                    len(alerts), "" if len(alerts) == 1 else "s", evaluation.messages,
                    "" if evaluation.messages == 1 else "s", len(evaluation.engine.devices),
                    "" if len(evaluation.engine.devices) == 1 else "s",
                    ", %d skipped" % evaluation.skipped if evaluation.skipped else ""))
            return 0
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
        show = _printer(args.json)
        announced = set(evaluation.engine.alerts)  # from --state: reported before the restart

        def on_alerts(alerts):
            for alert in alerts:
                ident = (alert.device, alert.rule, alert.key)
                show([alert], "updated" if ident in announced else "new")
                announced.add(ident)
        log_line("alerts: following %s (Ctrl-C to stop)" % (args.data or "the broker"))
        saved_at = evaluation.messages

        def save_state(final=False):
            # Every few seconds while messages come, and at the end; a failed save is retried
            # at the next check, and at the end it is the command's error.
            nonlocal saved_at
            if not args.state or evaluation.messages == saved_at:
                return
            try:
                state.save(args.state, evaluation.engine)
            except state.StateError as exc:
                if final:
                    raise UsageError(str(exc))
                log_line("warning: %s; retrying" % exc)
                return
            saved_at = evaluation.messages
        try:
            evaluation.follow(source.follow(stop), on_alerts, on_check=save_state)
        finally:
            save_state(final=True)
        return 0
    except SourceError as exc:
        raise UsageError(str(exc))
    finally:
        source.close()

