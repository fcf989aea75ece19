"""A device's text never acts on the operator's terminal: escape sequences, carriage returns,
newlines, C1 controls and bidi overrides a device (or a process's argv on a monitored host)
puts into its messages are printed escaped by `alerts`, `incidents` and `hub messages`, so
they can neither set the terminal's title nor forge a "High dev-a brute-force" row."""
import json
import os
import re
import subprocess
import sys

from raw_mqtt import RawClient
from test_hub_probes import publish_qos1

MICROAGENT = os.path.join(os.path.dirname(sys.executable), "microagent")
DEVICE = "dev-evil"
# what a terminal would act on, as bytes of UTF-8 output: C0 controls but the newline, DEL, the
# C1 controls (U+0080-U+009F) and the bidi embeddings, overrides and isolates
TERMINAL_CONTROL = re.compile(rb"[\x00-\x09\x0b-\x1f\x7f]|\xc2[\x80-\x9f]|\xe2\x80[\xaa-\xae]"
                              rb"|\xe2\x81[\xa6-\xa9]")
TITLE = "\x1b]0;pwned\x07"
FORGED = "\x1b[31mHigh dev-a brute-force"
ARGV = "/tmp/x %s %s\nHigh  dev-a  brute-force  \r\x9b2J\u202eesrever\x7f" % (TITLE, FORGED)


def _event(name, items, when="2026-01-01T00:10:10.000Z"):
    return {"Id": "00000000-0000-4000-8000-000000000001", "TimestampLocal": when,
            "TimestampUTC": when, "Category": "Triggered", "Name": name, "EventType": "Security",
            "IsEmpty": False, "PayloadSchemaVersion": "1.0", "Payload": items}


def hostile_body():
    """A well-formed message whose process argv and user name carry the escapes: new-process
    and binary-from-temp raise alerts that quote them in their titles."""
    process = {"timestamp": "2026-01-01T00:10:10.000Z", "process_id": 100,
               "parent_process_id": 1, "user_id": 1000, "commandline": ARGV, "type": "exec",
               "hit_count": 1, "user_name": "pi" + TITLE}
    dropped = {"timestamp": "2026-01-01T00:00:00.000Z", "collector": "ProcessCreate",
               "cache_size": 256, "dropped": 3, "evicted": 0, "unsupported": 0}
    return json.dumps({"AgentVersion": "0.1.0", "AgentId": "6c7a4b1e\x1b[2J",
                       "MessageSchemaVersion": "1.0",
                       "Events": [_event("ProcessCreate", [process]),
                                  _event("DroppedEvents", [dropped])]}).encode()


def _run(*args):
    done = subprocess.run([MICROAGENT] + list(args), capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    for stream in (done.stdout, done.stderr):
        found = TERMINAL_CONTROL.search(stream)
        assert found is None, "%r in %r" % (found.group(), stream[max(0, found.start() - 60):
                                                                 found.end() + 60])
    return done.stdout.decode("utf-8")


def test_device_text_is_printed_escaped(hub, tmp_path):
    hub.add_device(DEVICE)
    client = RawClient(hub).login(hub, DEVICE)
    publish_qos1(client, "devices/%s/messages/events/" % DEVICE, hostile_body())
    client.close()
    rules = tmp_path / "rules.json"   # nothing learned first: new-process quotes the whole argv
    rules.write_text('{"learning": {"duration_s": 0}}')
    table = _run("alerts", "--data", hub.data_dir, "--rules", str(rules))
    # the alerts quoting the argv are there, escaped, each on its one line
    rows = [line for line in table.splitlines() if line.startswith(("Medium", "Low", "High"))]
    new = [line for line in rows if "new-process" in line]
    assert len(new) == 1 and "\\x1b]0;pwned\\x07" in new[0] and "\\nHigh  dev-a" in new[0]
    assert "\\r\\x9b2J\\u202eesrever\\x7f" in new[0]
    assert any("binary-from-temp" in line and "\\x1b]0" in line for line in rows)
    assert [line for line in rows if "dev-a" in line.split()[1:2]] == []  # no forged row
    assert any("dropped-events" in line for line in rows)
    incidents = _run("incidents", "--data", hub.data_dir, "--rules", str(rules))
    assert "temporary folder: x \\x1b]0" in incidents
    messages = _run("hub", "messages", "--data", hub.data_dir)
    assert "ProcessCreate[1] DroppedEvents[1]" in messages
    listed = [json.loads(line) for line in _run("hub", "messages", "--data", hub.data_dir,
                                                "--json").splitlines()]
    assert listed[0]["body"]["Events"][0]["Payload"][0]["commandline"] == ARGV
    # JSON lines stay the device's exact text (escaped by JSON itself)
    alerts = [json.loads(line) for line in _run("alerts", "--data", hub.data_dir, "--rules",
                                                str(rules), "--json").splitlines()]
    assert any(ARGV in a["title"] for a in alerts if a["rule"] == "new-process")


def test_a_device_name_and_a_title_cannot_forge_rows_in_a_table():
    from host_sim.cli import table_lines
    lines = table_lines([("SEVERITY", "DEVICE", "ALERT"),
                         ("Low", "dev\n\x1b[31mHigh", "x\r\x1b]0;t\x07\u2066\u0085")])
    device = "dev\\n\\x1b[31mHigh"   # as printed: 18 characters wide
    assert lines == ["SEVERITY  " + "DEVICE".ljust(len(device)) + "  ALERT",
                     "Low       " + device + "  x\\r\\x1b]0;t\\x07\\u2066\\x85"]


def test_the_alert_table_shows_the_most_severe_within_its_limit(hub):
    """A device's flood of Low alerts cannot push a High one off the table: with --limit 1
    the High brute force is the row shown, and a last line counts the others."""
    hub.add_device(DEVICE)
    client = RawClient(hub).login(hub, DEVICE)
    logins = [{"timestamp": "2026-01-01T00:00:%02d.000Z" % i, "operation": "LoginFailed",
               "process_id": 4242, "user_name": "root", "executable": "sshd",
               "remote_address": "203.0.113.9", "hit_count": 1} for i in range(10)]
    dropped = [{"timestamp": "2026-01-01T00:00:00.000Z", "collector": collector,
                "cache_size": 256, "dropped": 1, "evicted": 0, "unsupported": 0}
               for collector in ("ProcessCreate", "ConnectionCreate", "Login")]
    body = {"AgentVersion": "0.1.0", "AgentId": "6c7a4b1e", "MessageSchemaVersion": "1.0",
            "Events": [_event("DroppedEvents", dropped, "2026-01-01T00:00:00.000Z"),
                       _event("Login", logins, "2026-01-01T00:00:30.000Z")]}
    publish_qos1(client, "devices/%s/messages/events/" % DEVICE, json.dumps(body).encode())
    client.close()
    everything = [json.loads(line) for line in _run("alerts", "--data", hub.data_dir,
                                                    "--json").splitlines()]
    alerts = [a for a in everything if a["kind"] == "alert"]
    assert {a["rule"] for a in alerts} == {"brute-force", "dropped-events"}
    table = _run("alerts", "--data", hub.data_dir, "--limit", "1").splitlines()
    assert [line.split()[2] for line in table[1:-2]] == ["brute-force"]
    assert table[-2] == "%d more alerts: use --json or --limit" % (len(alerts) - 1)


def test_the_demo_panels_show_device_text_as_text():
    """rich reads "[red]" in a string as markup: a device's text goes in as Text, escaped."""
    import io

    from rich.console import Console

    from host_sim.pretty import render_message
    out = io.StringIO()
    body = json.loads(hostile_body())
    body["Events"][0]["Payload"][0]["commandline"] = "[red]x[/red] \x1b[31mHigh"
    render_message(Console(file=out, width=200), body, "[bold]message\x1b[2J")
    text = out.getvalue()
    assert "[red]x[/red] \\x1b[31mHigh" in text and "[bold]message\\x1b[2J" in text
    assert TERMINAL_CONTROL.search(text.encode()) is None


def test_the_hubs_log_shows_device_text_escaped(hub):
    """The topics a device subscribes to and publishes on reach the hub's log lines."""
    import raw_mqtt
    client = RawClient(hub).login(hub)
    client.send(raw_mqtt.subscribe(1, "$iothub/twin/res/\x1b]0;pwned\x07/#",
                                   "devices/dev1/messages/devicebound/\u202e#"))
    client.send(raw_mqtt.publish("devices/dev1/messages/events/\x1b[2J\r\n", b"{}", qos=1,
                                 packet_id=2))
    client.closed_by_server()
    client.close()
    hub.stop()
    log = hub.log().encode("utf-8")
    assert b"pwned" in log and b"\\x1b]0;pwned\\x07" in log
    found = TERMINAL_CONTROL.search(log)
    assert found is None, log[max(0, found.start() - 80):found.end() + 80]
