"""`microagent incidents`: each device's alerts that belong to one attack, as one incident with
its highest severity, its timeline and the ATT&CK tactics it covers; by severity, then the most
recent first. A table with each incident's timeline, or JSON lines."""
import json

from host_sim.cloud.alerts.incidents import correlate
from host_sim.cloud.alerts.rules import RulesError, load_rules
from host_sim.cloud.alerts.run import Evaluation
from host_sim.cloud.alerts.sources import HubStore, SourceError
from host_sim.cli import UsageError, add_store_option, log_line, open_store_option, table_lines
from hub_emulator.printable import printable


def register(subparsers):
    p = subparsers.add_parser(
        "incidents", help="alerts of one attack grouped into incidents, by severity then recency",
        description="Evaluates the alert rules over what devices sent and groups each device's "
                    "alerts into incidents: alerts close in time, or sharing a remote address, "
                    "a user, a command line or a downloaded file. Each incident has its highest "
                    "severity, first and last time, the tactics and techniques it covers and a "
                    "timeline of its alerts. With --store, reads what the cloud store holds.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", metavar="HUBDIR", help="the hub emulator's data directory")
    add_store_option(source, "the cloud store (a file, sqlite:///path or postgresql://...); "
                             "alone: from $MICROAGENT_STORE")
    p.add_argument("--rules", metavar="FILE", help="your rules file; it overrides the defaults")
    p.add_argument("--json", action="store_true", help="one JSON object per incident and line")
    p.set_defaults(run=run)


def _records_from_data(args):
    try:
        rules = load_rules(args.rules)
        source = HubStore(args.data)
    except (RulesError, SourceError) as exc:
        raise UsageError(str(exc))
    try:
        evaluation = Evaluation(rules, on_skip=lambda line: log_line("warning: " + line))
        alerts = evaluation.batch(source.read_all())
    except SourceError as exc:
        raise UsageError(str(exc))
    finally:
        source.close()
    incidents, _ = correlate(alerts)
    return [incident.as_dict() for incident in incidents]


def _records_from_store(args):
    from host_sim.cloud.store import StoreError
    store = open_store_option(args.store, create=False)
    try:
        return store.incidents()
    except StoreError as exc:
        raise UsageError(str(exc))
    finally:
        store.close()


def _table(records):
    lines = table_lines([("SEVERITY", "DEVICE", "INCIDENT", "FIRST", "LAST", "ALERTS", "TACTICS")]
                        + [(r["severity"], r["device"], r["incident"], r["first"], r["last"],
                            str(r["alerts"]), ", ".join(r["tactics"]) or "-") for r in records],
                        right=(5,), last_free=False)
    out = lines[:1]
    for line, record in zip(lines[1:], records):
        out.append(line)
        out.append("    " + printable(record["title"]))
        for step in record["timeline"]:
            out.append(printable("      %s  %-6s %s: %s" % (step["time"], step["severity"],
                                                           step["rule"], step["title"])))
    return out


def run(args):
    records = _records_from_data(args) if args.data else _records_from_store(args)
    if args.json:
        for record in records:
            print(json.dumps(record, allow_nan=False), flush=True)
        return 0
    for line in _table(records):
        print(line)
    print("%d incident%s" % (len(records), "" if len(records) == 1 else "s"))
    return 0
