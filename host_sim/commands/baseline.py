"""`microagent baseline`: run the CIS checks and show what fails, as a table or JSON lines."""
import json
import os
import sys

from host_sim.cli import UsageError, table_lines
from host_sim.collectors import baseline

ORDER = {"Fail": 0, "Error": 1, "NotApplicable": 2, "Pass": 3}


def register(subparsers):
    parser = subparsers.add_parser(
        "baseline", help="run the CIS baseline checks on this system (or --root)",
        description="Runs the CIS Debian checks of host_sim/baseline/ and lists the results "
                    "that would be sent (Fail and Error), with the reason.")
    parser.add_argument("--root", default="/", help="file system root to check (default /)")
    parser.add_argument("--all", action="store_true",
                        help="also list passed and not applicable checks")
    parser.add_argument("--format", choices=("table", "json"), default="table",
                        help="table (default) or json: one Baseline payload item per line")
    parser.add_argument("--checks-disabled", default="", metavar="IDS",
                        help="comma-separated check ids to skip (Baseline_ChecksDisabled)")
    parser.add_argument("--groups-disabled", default="", metavar="GROUPS",
                        help="comma-separated groups to skip (Baseline_GroupsDisabled)")
    parser.set_defaults(run=run)


def run(args):
    if not os.path.isdir(args.root):
        raise UsageError("--root %s is not a directory" % args.root)
    results = baseline.run_checks(
        args.root, baseline.enabled_checks(args.checks_disabled, args.groups_disabled))
    if args.format == "json":
        for r in results:
            if r.result in ("Fail", "Error"):
                sys.stdout.write(json.dumps(r.item()) + "\n")
        return 0
    shown = [r for r in results if args.all or r.result in ("Fail", "Error")]
    shown.sort(key=lambda r: ORDER[r.result])          # stable: benchmark order within each
    rows = [(r.check["check_id"], r.result, r.check.get("severity", ""), r.reason) for r in shown]
    print_table(("check", "result", "severity", "finding"), rows)
    counts = {name: sum(1 for r in results if r.result == name) for name in ORDER}
    print("\n%d checks: %d failed, %d errors, %d passed, %d not applicable"
          % (len(results), counts["Fail"], counts["Error"], counts["Pass"],
             counts["NotApplicable"]))
    return 0


def print_table(headers, rows):
    for line in table_lines([headers] + rows):
        print(line)
