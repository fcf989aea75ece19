"""Readable rendering of security messages for people (tables per event, one panel a message).
Device text is printable() and given to rich as Text, never as markup: "[red]" stays text."""
import json
import os

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from hub_emulator.printable import printable

_COLUMNS = {
    "ProcessCreate": [("first seen", "timestamp"), ("hits", "hit_count"), ("uid", "user_id"),
                      ("pid", "process_id"), ("type", "type"), ("command line", "commandline")],
    "ConnectionCreate": [("first seen", "timestamp"), ("hits", "hit_count"),
                         ("proto", "transport_protocol"), ("app", "application_protocol"),
                         ("local", "local"), ("remote", "remote"), ("dir", "direction"),
                         ("bytes in", "bytes_in"), ("bytes out", "bytes_out"),
                         ("dns", "dns_hit_count"), ("host name", "host_name")],
    "Login": [("time", "timestamp"), ("operation", "operation"), ("user", "user_name"),
              ("pid", "process_id"), ("terminal", "executable"), ("from", "remote_address")],
    "DroppedEvents": [("window start", "timestamp"), ("collector", "collector"),
                      ("cache size", "cache_size"), ("dropped", "dropped"),
                      ("evicted", "evicted"), ("unsupported", "unsupported")],
    "SBoM": [("name", "name"), ("version", "version"), ("vendor", "vendor")],
    "Baseline": [("check", "check_id"), ("result", "check_result"), ("severity", "severity"),
                 ("description", "description"), ("error", "error")],
}
_NUMERIC = {"hit_count", "user_id", "process_id", "bytes_in", "bytes_out", "dns_hit_count",
            "cache_size", "dropped", "evicted", "unsupported"}
_MAX_ROWS = 12


def _value(item, field):
    if field in ("local", "remote"):
        address = item[field + "_address"]
        # An IPv6 address in brackets, so its port reads apart from its groups (RFC 3986).
        return ("[%s]:%s" if ":" in address else "%s:%s") % (address, item[field + "_port"])
    if field == "host_name":
        return item.get("extended_properties", {}).get("host_name", "")
    if field == "timestamp":
        return item.get(field, "").replace("T", " ").rstrip("Z")
    value = item.get(field, "")
    if isinstance(value, int) and not isinstance(value, bool):
        return "{:,}".format(value)
    return str(value)


def render_message(console, message, title):
    if isinstance(message, (str, bytes)):
        size = len(message if isinstance(message, bytes) else message.encode())
        message = json.loads(message)
    else:
        size = len(json.dumps(message, separators=(",", ":")).encode())
    console.rule("[bold]%s[/bold] · %s bytes · agent %s" % (
        escape(printable(title)), "{:,}".format(size), escape(printable(message["AgentId"][:8]))))
    for event in message["Events"]:
        name = event["Name"]
        payload = event["Payload"]
        columns = _COLUMNS.get(name)
        heading = "%s (%s, %s) · %d item%s · sent %s" % (
            name, event["Category"], event["EventType"], len(payload),
            "" if len(payload) == 1 else "s", event["TimestampUTC"].replace("T", " "))
        if columns is None:
            console.print(Text(printable(heading)))
            for item in payload:
                console.print(Text("  " + json.dumps(item, sort_keys=True)))
            continue
        table = Table(title=Text(printable(heading)), title_justify="left", show_edge=False, pad_edge=False)
        for label, field in columns:
            table.add_column(label, justify="right" if field in _NUMERIC else "left",
                             overflow="fold", max_width=48 if field == "commandline" else None)
        for item in payload[:_MAX_ROWS]:
            table.add_row(*[Text(printable(_value(item, field))) for _, field in columns])
        if len(payload) > _MAX_ROWS:
            table.add_row("… %d more" % (len(payload) - _MAX_ROWS), *[""] * (len(columns) - 1))
        console.print(table)


def console():
    return Console(width=None if os.isatty(1) else 140)
