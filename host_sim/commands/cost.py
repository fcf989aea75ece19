"""`microagent cost TRACE`: IoT Hub meter units per device-day, JSON and compact against one
message per raw event, and how many devices one hub unit carries."""
import json

from host_sim.cli import UsageError, check_option, table_lines
from host_sim.cost import UNITS, measure
from host_sim.replay import ReplayError


def register(subparsers):
    p = subparsers.add_parser(
        "cost", help="IoT Hub blocks per device-day for a trace, JSON vs compact",
        description="Replays TRACE through the host engine in both encodings and scales its span "
                    "to a day: messages, 4 KB blocks (the S1-S3 meter) and 0.5 KB blocks (the "
                    "Free tier's) per device-day, against one message per raw event, and how "
                    "many such devices one Free/S1/S2/S3 unit carries (8,000 / 400,000 / "
                    "6 M / 300 M messages a day).")
    p.add_argument("trace", metavar="TRACE")
    p.add_argument("--window", type=float, default=7200.0, metavar="S",
                   help="window length in seconds (default 7200: the Medium priority interval)")
    p.add_argument("--cache-size", type=int, metavar="N",
                   help="entries per cache (default 256)")
    p.add_argument("--json", action="store_true", help="one JSON line per row instead of a table")
    p.set_defaults(run=run)


def _number(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        return "{:,.1f}".format(value) if value < 100 else "{:,.0f}".format(value)
    return "{:,}".format(value)


def run(args):
    check_option("--window", args.window, positive=True)
    check_option("--cache-size", args.cache_size, 1)
    try:
        rows, per_day = measure(args.trace, int(round(args.window * 1000)), args.cache_size)
    except ReplayError as exc:
        raise UsageError(str(exc))
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    header = ["sender", "messages/day", "bytes/day", "4 KB blocks/day", "0.5 KB blocks/day",
              "saving x"] + ["devices/%s" % unit for unit, _ in UNITS]
    table = [header]
    for row in rows:
        table.append([row["sender"], _number(row["messages_per_day"]),
                      _number(row["bytes_per_day"]), _number(row["blocks_per_day"]),
                      _number(row["free_blocks_per_day"]), _number(row["saving"])]
                     + [_number(row["devices_per_" + unit]) for unit, _ in UNITS])
    print("%s scaled to one device-day (x%.1f of the trace's span)" % (args.trace, per_day))
    for line in table_lines(table, right=range(1, len(header)), last_free=False):
        print(line)
    return 0
