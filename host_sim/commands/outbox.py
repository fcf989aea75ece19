"""`microagent outbox`: what the host agent's persistent outbox holds, for an admin asking
whether the agent is keeping up (read only: safe while the agent runs)."""
import json
import os

from host_sim.cli import UsageError
from hub_emulator.printable import printable
from host_sim.outbox import summary
from host_sim.replay import default_outbox_path


def register(subparsers):
    p = subparsers.add_parser(
        "outbox", help="show what the host agent's outbox holds (waiting messages, delivered, "
                       "expired)",
        description="Reads the SQLite outbox of `microagent run`/`replay --engine host` without "
                    "changing it: messages waiting for the hub's acknowledgement, their bytes, "
                    "the age of the oldest, and how many were delivered or expired "
                    "(IothubModule_MessageTimeout) since the file was created.")
    p.add_argument("--outbox", metavar="FILE",
                   help="the outbox file (default ~/.local/state/microagent/outbox.db)")
    p.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    p.set_defaults(run=run)


def _age(seconds):
    if seconds is None:
        return "-"
    if seconds < 120:
        return "%d s" % seconds
    if seconds < 7200:
        return "%d min" % (seconds // 60)
    return "%.1f h" % (seconds / 3600)


def run(args):
    path = args.outbox or default_outbox_path(create=False)
    if not os.path.isfile(path):
        raise UsageError("no outbox at %s (the agent writes it when it first sends; give "
                         "--outbox FILE for another one)" % path)
    try:
        state = summary(path)
    except ValueError as exc:
        raise UsageError(str(exc))
    if args.json:
        print(json.dumps(dict(state, outbox=path)))
        return 0
    rows = [("outbox", path), ("waiting", "{:,}".format(state["pending"])),
            ("waiting bytes", "{:,}".format(state["bytes"])),
            ("oldest waiting", _age(state["oldest_age_s"])),
            ("delivered", "{:,}".format(state["delivered"])),
            ("expired", "{:,}".format(state["expired"]))]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print("%-*s  %s" % (width, name, printable(value)))
    return 0
