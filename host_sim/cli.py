"""The `microagent` command: discovers subcommands in host_sim.commands."""
import argparse
import importlib
import os
import pkgutil
import sys
import threading

from hub_emulator.printable import printable

from host_sim import commands
from host_sim.private_files import open_private


class UsageError(Exception):
    """A bad argument or input the user can fix; printed as one line, exit 2."""


_STDERR_LOCK = threading.Lock()


def log_line(text):
    """Writes TEXT as one whole line to stderr, control characters escaped (it may quote what a
    device or a process sent). Collector and transport threads log too: print() writes the text
    and its newline separately, so two threads' lines could interleave."""
    with _STDERR_LOCK:
        sys.stderr.write(printable(text) + "\n")
        sys.stderr.flush()


def write_output(path, text):
    """Writes TEXT to the file PATH, or to stdout when PATH is '-'; UsageError if it cannot."""
    if path == "-":
        sys.stdout.write(text)
        return
    try:
        with open_private(path) as f:   # a recording holds every event: the owner's alone
            f.write(text)
    except OSError as exc:
        raise UsageError("cannot write --output %s: %s" % (path, exc.strerror))


def build_parser():
    parser = argparse.ArgumentParser(
        prog="microagent",
        description="Security event agent for MicroPython boards and Linux IoT devices.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module("host_sim.commands." + info.name)
        module.register(subparsers)
    return parser


def add_store_option(group, help):
    """`--store DSN`, or `--store` alone for $MICROAGENT_STORE (a password stays off argv)."""
    group.add_argument("--store", metavar="DSN", nargs="?",
                       const=os.environ.get("MICROAGENT_STORE", ""), help=help)


def open_store_option(dsn, create=True):
    """The cloud store --store names; UsageError in one line when it cannot be used (CREATE=
    False: a reader, which must not make an empty SQLite store)."""
    from host_sim.cloud.store import StoreError, open_store
    if not dsn:
        raise UsageError("--store needs a DSN (or $MICROAGENT_STORE)")
    try:
        return open_store(dsn, create)
    except StoreError as exc:
        raise UsageError(str(exc))


def check_option(option, value, low=None, high=None, positive=False, why=""):
    """UsageError in the one wording every command uses unless VALUE is within LOW..HIGH
    (either may be None) and, with POSITIVE, above 0: "--window must be positive, got 0"."""
    if value is None:
        return
    if positive and value <= 0:
        rule = "positive"
    elif low is not None and high is not None and not low <= value <= high:
        rule = "in %s..%s" % (low, high)
    elif low is not None and high is None and value < low:
        rule = "at least %s" % low
    else:
        return
    raise UsageError("%s must be %s%s, got %s" % (option, rule, " (%s)" % why if why else "",
                                                   value))


def interrupt_on_sigterm(signum=None, frame=None):
    """A SIGTERM handler: stop as Ctrl-C does (systemd and `kill` send SIGTERM)."""
    raise KeyboardInterrupt


def table_lines(rows, right=(), last_free=True):
    """ROWS (a header then rows, lists of str) as aligned text lines for people: columns two
    spaces apart, those in RIGHT right-aligned (numbers); LAST_FREE: the last column (a title,
    a finding) is not padded. Cells are printable(): a device's text cannot act on the terminal
    nor forge a row."""
    rows = [[printable(cell) for cell in row] for row in rows]
    padded = len(rows[0]) - 1 if last_free else len(rows[0])
    widths = [max(len(row[i]) for row in rows) for i in range(padded)]
    lines = []
    for row in rows:
        cells = "  ".join(row[i].rjust(w) if i in right else row[i].ljust(w)
                          for i, w in enumerate(widths))
        lines.append(cells + "  " + row[-1] if last_free else cells.rstrip())
    return lines


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args) or 0
    except UsageError as exc:
        print("microagent: error: %s" % printable(exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
