"""Printing benchmark tables (rich) and keeping a JSON line per row for programs."""
import json
import os

from rich.console import Console
from rich.table import Table

# Wide enough for the tables when the output is a file or a pipe (CI logs).
_console = Console(width=None if os.isatty(1) else 120)
RESULTS = os.environ.get("BENCH_JSON")


def table(title, columns, rows):
    """Prints ROWS (lists of cells) under COLUMNS; appends them as JSON lines to $BENCH_JSON."""
    t = Table(title=title, title_justify="left", show_lines=False)
    for i, column in enumerate(columns):
        t.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        t.add_row(*[_cell(c) for c in row])
    _console.print(t)
    if RESULTS:
        with open(RESULTS, "a") as f:
            for row in rows:
                f.write(json.dumps({"table": title, **dict(zip(columns, row))}) + "\n")


def _cell(value):
    if isinstance(value, float):
        return "%.3g" % value if abs(value) < 100 else "{:,.0f}".format(value)
    if isinstance(value, int):
        return "{:,}".format(value)
    return str(value)


def progress(text):
    _console.print("[dim]%s[/dim]" % text)
