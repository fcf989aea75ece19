"""`microagent alerts`: the alert rules over what devices sent (the hub emulator's store, an MQTT
broker the messages are forwarded to, or Kafka / Event Hubs as a consumer group member), in
memory or into the cloud store; and what the cloud store holds. A table, or JSON lines."""
import argparse
import itertools
import json
import os
import signal
import threading
import types

from host_sim.cloud.alerts.incidents import alert_id, correlate, incident_of
from host_sim.cloud.alerts.hub_events import HubEvent
from host_sim.cloud.alerts.messages import format_time, parse_time
from host_sim.cloud.alerts.rules import SEVERITIES, RulesError, load_rules
from host_sim.cloud.alerts.run import Evaluation, follow_into_store
from host_sim.cloud.alerts.sources import HubStore, MqttSource, SourceError
from host_sim.cli import (UsageError, add_store_option, check_option, log_line,
                          open_store_option, table_lines)
from hub_emulator.printable import printable

MQTT_TOPIC = "devices/+/messages/events/#"
TABLE_LIMIT = 200
STATE_GONE = ("--state is gone: use --store DSN (what the rules learned and the alerts are kept "
              "in the cloud store)")


def register(subparsers):
    p = subparsers.add_parser(
        "alerts", help="security alerts from the messages devices sent (rules as data)",
        description="Evaluates the alert rules (defaults shipped with microagent, overridden by "
                    "--rules FILE) over each device's messages and prints the alerts: device, "
                    "rule, severity, first and last time, evidence and what to do. With --store "
                    "the alerts and what the rules learned go to the cloud store; --store alone "
                    "prints what it holds.")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--data", metavar="HUBDIR", help="the hub emulator's data directory")
    source.add_argument("--broker", metavar="URL", nargs="?",
                        const=os.environ.get("MICROAGENT_ALERTS_BROKER", ""),
                        help="follow an MQTT broker the messages are forwarded to: "
                             "mqtt[s]://user:password@host:port; give --broker alone to read "
                             "the URL from $MICROAGENT_ALERTS_BROKER (keeps the password off "
                             "the command line)")
    source.add_argument("--kafka", metavar="BOOTSTRAP",
                        help="be one member of a Kafka consumer group (Event Hubs' Kafka "
                             "endpoint: host:9093; SASL settings from the environment, see "
                             "docs/event-hubs.md); needs --topic, --group and --store")
    add_store_option(p, "the cloud store: a file, sqlite:///path or postgresql://...; give "
                        "--store alone to read it from $MICROAGENT_STORE (keeps a password off "
                        "the command line)")
    p.add_argument("--ca", metavar="FILE", help="CA certificate (PEM) of the broker (mqtts)")
    p.add_argument("--topic", help="topic filter on the broker (default: every device's "
                                   "telemetry), or the Kafka topic")
    p.add_argument("--client-id", metavar="ID",
                   help="with --broker: the MQTT client id of the follower's persistent session "
                        "(default: one derived from this machine, the broker user and the topic)")
    p.add_argument("--group", metavar="GROUP", help="with --kafka: the consumer group")
    p.add_argument("--rules", metavar="FILE", help="your rules file; it overrides the defaults")
    p.add_argument("--tags", metavar="FILE",
                   help="with --store: device tags for the console's filter, a JSON object of "
                        "device-id glob -> list of tags, given to each device as it is ingested")
    p.add_argument("--commit-every", metavar="N", type=int, default=1000,
                   help="with --store: commit at least every N messages (default 1000; and "
                        "every 5 s while following)")
    p.add_argument("--state", help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="one JSON object per alert and line")
    p.add_argument("--limit", metavar="N", type=int, default=TABLE_LIMIT,
                   help="the table shows at most N alerts, the most severe first chosen "
                        "(default %d; --json prints them all)" % TABLE_LIMIT)
    p.add_argument("--follow", action="store_true",
                   help="keep evaluating messages as they arrive (always on with --broker and "
                        "--kafka)")
    shown = p.add_argument_group("printing what --store holds (no source given)")
    shown.add_argument("--severity", choices=SEVERITIES)
    shown.add_argument("--rule", metavar="ID")
    shown.add_argument("--device", metavar="GLOB", help="device ids matching GLOB (* and ?)")
    shown.add_argument("--since", metavar="TIME", help="alerts still active at or after TIME "
                                                       "(ISO 8601, UTC)")
    shown.add_argument("--until", metavar="TIME", help="alerts that began by TIME")
    p.set_defaults(run=run)


def _table(rows, limit):
    """ROWS: alert dicts (first and last as text), in their order; past LIMIT rows only the
    most severe LIMIT are shown (one device's flood of Low alerts cannot push a High one off)
    and a last line counts the others."""
    shown = rows
    if len(rows) > limit:
        rank = sorted(range(len(rows)), key=lambda i: _SEVERITY_RANK.get(rows[i]["severity"], 9))
        keep = set(rank[:limit])
        shown = [row for i, row in enumerate(rows) if i in keep]
    lines = table_lines([("SEVERITY", "DEVICE", "RULE", "FIRST", "LAST", "COUNT", "ALERT")] + [
        (d["severity"], d["device"], d["rule"], d["first"], d["last"], str(d["count"]),
         d["title"]) for d in shown], right=(5,))
    if len(rows) > limit:
        lines.append("%d more alert%s: use --json or --limit" % (
            len(rows) - limit, "" if len(rows) - limit == 1 else "s"))
    return lines


_SEVERITY_RANK = {severity: i for i, severity in enumerate(SEVERITIES)}


def _recommendation_table(items):
    """ITEMS: Recommendations, as a table after the alerts'."""
    return table_lines([("SEVERITY", "DEVICE", "RECOMMENDATION", "TITLE")] + [
        (r.severity, r.device, r.rule, r.title) for r in items])


def _printer(as_json, incident_of=None):
    """SHOW(alerts, status): JSON lines (with the incident each alert belongs to, from
    INCIDENT_OF(alert)) or one readable line per alert."""
    def show(alerts, status=None):
        for alert in alerts:
            if as_json:
                record = alert.as_dict()
                record["incident"] = (incident_of(alert) if incident_of
                                      and record["kind"] == "alert" else None)
                if status:
                    record["status"] = status
                print(json.dumps(record, allow_nan=False), flush=True)
            else:
                d = alert.as_dict()
                print(printable("%s %s %s %s: %s -- %s" % (
                    status or "", d["severity"], d["device"], d["rule"], d["title"],
                    d["what_to_do"])), flush=True)
    return show


def _time_option(name, text):
    if text is None:
        return None
    t = parse_time(text)
    if t is None:
        raise UsageError("%s %s: expected an ISO 8601 time such as 2026-01-01T00:00:00Z"
                         % (name, text))
    return t


def _check(args):
    if args.state is not None:
        raise UsageError(STATE_GONE)
    if args.broker == "":
        raise UsageError("--broker needs a URL (or $MICROAGENT_ALERTS_BROKER)")
    if args.ca and not os.path.isfile(args.ca):
        raise UsageError("--ca %s: no such file" % args.ca)
    has_source = args.data is not None or args.broker is not None or args.kafka is not None
    if not has_source and args.store is None:
        raise UsageError("give a source (--data, --broker or --kafka), or --store to print what "
                         "it holds")
    if args.kafka is not None and (args.store is None or not args.topic or not args.group):
        raise UsageError("--kafka needs --topic, --group and --store")
    if args.group and args.kafka is None:
        raise UsageError("--group goes with --kafka")
    filters = [name for name in ("severity", "rule", "device", "since", "until")
               if getattr(args, name) is not None]
    if filters and has_source:
        raise UsageError("--%s filters what --store holds: give it without a source" % filters[0])
    if (args.tags or args.commit_every != 1000) and (args.store is None or not has_source):
        raise UsageError("--tags and --commit-every go with a source and --store")
    check_option("--commit-every", args.commit_every, 1)
    check_option("--limit", args.limit, positive=True)
    return has_source


def run(args):
    has_source = _check(args)
    if not has_source:
        return _print_store(args)
    try:
        rules = load_rules(args.rules)
    except RulesError as exc:
        raise UsageError(str(exc))
    if args.store is not None:
        return _into_store(args, rules)
    return _in_memory(args, rules)


def _print_store(args):
    since = _time_option("--since", args.since)
    until = _time_option("--until", args.until)
    from host_sim.cloud.store import StoreError
    store = open_store_option(args.store, create=False)
    try:
        rows = store.alerts(severity=args.severity, rule=args.rule, device=args.device,
                            since=since, until=until)
        # recommendations are the devices' state now, not events: a time window leaves them out
        advice = [] if since is not None or until is not None else [
            r for r in store.recommendations(device=args.device)
            if args.severity in (None, r["severity"]) and args.rule in (None, r["rule"])]
    except StoreError as exc:
        raise UsageError(str(exc))
    finally:
        store.close()
    rows.reverse()   # oldest first, like the other listings
    for row in rows:
        row["first"], row["last"] = format_time(row["first"]), format_time(row["last"])
    if args.json:
        for row in rows + advice:
            row.pop("first_time", None)
            row.pop("last_time", None)
            print(json.dumps(row, allow_nan=False), flush=True)
    else:
        for line in _table(rows, args.limit):
            print(line)
        if advice:
            print()
            for line in _recommendation_table([types.SimpleNamespace(**r) for r in advice]):
                print(line)
        print("%d alert%s and %d recommendation%s in the store" % (
            len(rows), "" if len(rows) == 1 else "s", len(advice), "" if len(advice) == 1 else "s"))
    return 0


def _in_memory(args, rules):
    try:
        source = HubStore(args.data) if args.data else MqttSource(
            args.broker, args.ca, args.topic or MQTT_TOPIC, client_id=args.client_id,
            log=log_line).start()
    except SourceError as exc:
        raise UsageError(str(exc))
    evaluation = Evaluation(rules, on_skip=lambda line: log_line("warning: " + line),
                            hub_facts=source.hub_facts if args.data else None)
    try:
        if args.data and not args.follow:
            alerts = evaluation.batch(source.read_all())
            advice = evaluation.recommendations()
            if args.json:
                _, membership = correlate(alerts)
                _printer(True, lambda alert: membership.get(alert_id(alert)))(alerts + advice)
            else:
                for line in _table([a.as_dict() for a in alerts], args.limit):
                    print(line)
                if advice:
                    print()
                    for line in _recommendation_table(advice):
                        print(line)
                print("%d alert%s from %d message%s of %d device%s%s" % (
                    len(alerts), "" if len(alerts) == 1 else "s", evaluation.messages,
                    "" if evaluation.messages == 1 else "s", len(evaluation.engine.devices),
                    "" if len(evaluation.engine.devices) == 1 else "s",
                    ", %d skipped" % evaluation.skipped if evaluation.skipped else ""))
            return 0
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
        log_line("alerts: following %s (Ctrl-C to stop)" % (args.data or "the broker"))
        show = _printer(args.json, lambda alert: incident_of(evaluation.engine, alert))
        evaluation.follow(source.follow(stop), _announcer(show, set()))
        return 0
    except SourceError as exc:
        raise UsageError(str(exc))
    finally:
        source.close()


def _announcer(show, announced):
    """ON_ALERTS for a follower: each alert printed as "new" the first time, then "updated"."""
    def on_alerts(alerts):
        for alert in alerts:
            ident = (alert.device, alert.rule, alert.key)
            show([alert], "updated" if ident in announced else "new")
            announced.add(ident)
    return on_alerts


def _into_store(args, rules):
    from host_sim.cloud.ingest import Ingest, load_tags
    from host_sim.cloud.store import StoreError
    try:
        tags = load_tags(args.tags) if args.tags else None
    except ValueError as exc:
        raise UsageError(str(exc))
    ingest = Ingest(open_store_option(args.store), rules,
                    on_skip=lambda line: log_line("warning: " + line), tags=tags)
    stop = threading.Event()
    show = _printer(args.json, lambda alert: incident_of(ingest.engine, alert))
    try:
        if args.kafka is not None:
            from host_sim.cloud.kafka import run_member
            signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
            run_member(args.kafka, args.topic, args.group, ingest, log=log_line, stop=stop,
                       on_alerts=_announcer(show, ingest.restored))
            return 0
        if args.data is not None:
            return _hub_into_store(args, ingest, stop, show)
        return _broker_into_store(args, ingest, stop, show)
    except (StoreError, SourceError) as exc:
        raise UsageError(str(exc))
    finally:
        ingest.close()


def _hub_into_store(args, ingest, stop, show):
    """The emulator's store as source "hub", partition 0, the message id as offset: a re-run
    reads after the stored position and duplicates nothing."""
    try:
        source = HubStore(args.data)
    except SourceError as exc:
        raise UsageError(str(exc))
    try:
        start = ingest.positions("hub", [0])[0]
        source.last_id = start - 1 if start is not None else 0
        start = ingest.positions("hub-events", [0])[0]
        source.last_event_id = start - 1 if start is not None else 0
        if not args.follow:
            changed = {}

            def remember(alerts):
                for alert in alerts:
                    changed[(alert.device, alert.rule, alert.key)] = alert
            follow_into_store(ingest, _hub_records(source.read_all()), remember,
                              commit_every=args.commit_every)
            remember(ingest.check_silence())
            ingest.commit()
            alerts = sorted(changed.values(), key=lambda a: (a.first, a.device, a.rule, a.key))
            if args.json:
                show(alerts)
            else:
                for line in _table([a.as_dict() for a in alerts], args.limit):
                    print(line)
                print("%d alert%s raised or updated from %d message%s%s" % (
                    len(alerts), "" if len(alerts) == 1 else "s", ingest.messages,
                    "" if ingest.messages == 1 else "s",
                    ", %d skipped" % ingest.skipped if ingest.skipped else ""))
            return 0
        signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
        log_line("alerts: following %s into the store (Ctrl-C to stop)" % args.data)
        follow_into_store(ingest, _hub_records(source.follow(stop)),
                          _announcer(show, ingest.restored), commit_every=args.commit_every)
        return 0
    except SourceError as exc:
        raise UsageError(str(exc))
    finally:
        source.close()


def _hub_records(items):
    """The hub's messages as source "hub" and its records (HubEvent) as source "hub-events",
    partition 0, the row id as offset; None (idle) passes through."""
    for item in items:
        if item is None:
            yield None
        else:
            yield ("hub-events" if isinstance(item, HubEvent) else "hub", 0, item.id, item)


def _broker_into_store(args, ingest, stop, show):
    """An MQTT broker as source "mqtt", partition 0: it replays nothing, so the offsets only
    count on from the stored one (the store keeps what the rules learned across restarts)."""
    try:
        source = MqttSource(args.broker, args.ca, args.topic or MQTT_TOPIC,
                            client_id=args.client_id, log=log_line).start()
    except SourceError as exc:
        raise UsageError(str(exc))
    try:
        start = ingest.positions("mqtt", [0])[0] or 0
        offsets = itertools.count(start)
        signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
        log_line("alerts: following the broker into the store (Ctrl-C to stop)")
        records = (None if m is None else ("mqtt", 0, next(offsets), m) for m in source.follow(stop))
        follow_into_store(ingest, records, _announcer(show, ingest.restored),
                          commit_every=args.commit_every)
        return 0
    except SourceError as exc:
        raise UsageError(str(exc))
    finally:
        source.close()
