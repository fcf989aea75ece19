"""`microagent console --store`: a store of 10,000 devices generated directly into it (the
console has no message source at all, so it cannot read messages at start), served a page of
100 at a time with a link to the next; alert filters by severity, rule, tag, device and time;
hostile device ids and evidence escaped. Both backends."""
import html
import os
import re
import subprocess
import urllib.error
import urllib.parse
import urllib.request

import pytest

from host_sim.cloud.alerts.engine import Alert
from host_sim.cloud.store import open_store
from host_sim.cloud.store.base import Batch

from alert_helpers import START
from hub_replays import MICROAGENT, Lines

DEVICES = 10000
HOSTILE = 'zz<script>alert("x")</script>&\'dev'
RULES = {"brute-force": "High", "new-process": "Medium", "silence": "Low"}
# (device, severity, last time): the fleet page lists them High first, then the newest
INCIDENTS = [("dev-00007", "Medium", START + 9000), (HOSTILE, "High", START + 100),
             ("dev-00003", "High", START + 5000)]


def _fleet():
    """The store's content: (batch, expected alerts as (device, rule, severity, first))."""
    batch = Batch()
    expected = []
    names = ["dev-%05d" % i for i in range(DEVICES)] + [HOSTILE]
    for i, device in enumerate(names):
        batch.devices.append((device, "hub", i % 4, START + 3600 + i, START + 3601 + i, 2, 0,
                              None))
        batch.hourly.append((device, int(START), 1, 1, 10, 0, 3))
        batch.hourly.append((device, int(START) + 3600, 1, 2, 5, i % 3, 9))
        batch.tags[device] = ["even" if i % 2 == 0 else "odd"] + (["lab"] if i % 100 == 0 else [])
        for n, (rule, severity) in enumerate(RULES.items()):
            if i % (50 * (n + 1)) == 0 or device == HOSTILE:
                first = START + i + n
                alert = Alert(device, {"id": rule, "severity": severity}, "key %d" % n, first, 5)
                alert.add(first, {"user": "<b>root</b>", "device": device})
                alert.title = "%s on %s" % (rule, device)
                batch.alerts.append(alert)
                expected.append((device, rule, severity, first))
    for n, (device, severity, last) in enumerate(INCIDENTS):
        batch.incidents.setdefault(device, []).append({
            "kind": "incident", "incident": "inc-%d" % n, "device": device, "severity": severity,
            "title": "incident %d on %s" % (n, device), "first": "2026-01-01T00:00:00.000Z",
            "last": "2026-01-01T01:00:00.000Z", "first_time": START, "last_time": last,
            "alerts": 2, "tactics": ["Execution"], "technique": ["T1059"],
            "timeline": [{"time": "2026-01-01T00:00:00.000Z", "rule": "reverse-shell",
                          "severity": severity, "title": "<i>shell</i> of " + device,
                          "alert": "x"}]})
    return batch, expected


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def console(request, tmp_path_factory):
    if request.param == "sqlite":
        dsn = str(tmp_path_factory.mktemp("console-store") / "cloud.db")
    else:
        dsn = request.getfixturevalue("postgres_server").create_database("console_store")
    batch, expected = _fleet()
    store = open_store(dsn)
    store.write(batch)
    store.close()
    env = dict(os.environ, MICROAGENT_STORE=dsn)
    proc = subprocess.Popen([MICROAGENT, "console", "--store", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = Lines(proc.stdout).wait_for(lambda text: text.startswith("console: http://"), 60)
        yield line.split()[1].rstrip("/"), expected
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0


def _get(base, path, status=200):
    try:
        with urllib.request.urlopen(base + path, timeout=60) as response:
            assert response.status == status
            return response.read().decode()
    except urllib.error.HTTPError as exc:
        assert exc.code == status, exc.read()
        return exc.read().decode()


def _rows(page, table_id):
    """The body rows of table TABLE_ID as lists of cell texts (tags removed, unescaped)."""
    body = re.search(r'<table id="%s">.*?<tbody>(.*?)</tbody>' % table_id, page, re.S).group(1)
    rows = []
    for row in re.findall(r"<tr>(.*?)</tr>", body, re.S):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        rows.append([html.unescape(re.sub(r"<[^>]+>", "", c)) for c in cells])
    return [r for r in rows if r != ["none"]]


def _next(page):
    found = re.search(r'<a id="next" href="([^"]+)"', page)
    return html.unescape(found.group(1)) if found else None


def test_pages_of_100_devices_in_order_with_a_next_link(console):
    base, _ = console
    first = _get(base, "/")
    rows = _rows(first, "devices")
    assert [r[0] for r in rows] == ["dev-%05d" % i for i in range(100)]
    assert "10,001</b>devices" in first
    second = _get(base, _next(first))
    assert [r[0] for r in _rows(second, "devices")] == ["dev-%05d" % i for i in range(100, 200)]
    last = _get(base, "/?" + urllib.parse.urlencode({"after": "dev-09950"}))
    names = [r[0] for r in _rows(last, "devices")]
    assert names[0] == "dev-09951" and names[-2:] == ["dev-09999", HOSTILE] and _next(last) is None
    tagged = _get(base, "/?tag=lab")
    assert [r[0] for r in _rows(tagged, "devices")] == ["dev-%05d" % i for i in range(0, 10000, 100)]


def test_the_fleet_page_opens_with_incidents_by_severity_then_recency(console):
    base, _ = console
    page = _get(base, "/")
    assert page.index("<h2>Incidents") < page.index("<h2>Devices")
    assert [(r[0], r[1]) for r in _rows(page, "incidents")] == [
        ("High", "dev-00003"), ("High", HOSTILE), ("Medium", "dev-00007")]
    assert "<i>shell</i>" not in page and "&lt;i&gt;shell&lt;/i&gt;" in page


def test_alert_filters(console):
    base, expected = console

    def listed(**query):
        found, path = [], "/alerts?" + urllib.parse.urlencode(query)
        while path:
            page = _get(base, path)
            found += [(r[1], r[2]) for r in _rows(page, "alerts")]
            path = _next(page)
        return sorted(found)

    def wanted(keep):
        return sorted((d, r) for d, r, s, f in expected if keep(d, r, s, f))
    assert listed() == wanted(lambda d, r, s, f: True) and len(expected) > 100
    assert listed(severity="High") == wanted(lambda d, r, s, f: s == "High")
    assert listed(rule="silence") == wanted(lambda d, r, s, f: r == "silence")
    assert listed(tag="lab") == wanted(lambda d, r, s, f: d == HOSTILE or int(d[4:]) % 100 == 0)
    assert listed(tag="odd") == []
    assert listed(device="dev-001*") == wanted(lambda d, r, s, f: d.startswith("dev-001"))
    until = "2026-01-01T00:30:00.000Z"   # START + 1800 s
    assert listed(until=until, severity="Medium") == wanted(
        lambda d, r, s, f: f <= START + 1800 and s == "Medium")
    assert listed(since=until) == wanted(lambda d, r, s, f: f >= START + 1800)
    assert "severity must be one of" in _get(base, "/alerts?severity=Bogus", status=400)
    assert "ISO 8601" in _get(base, "/alerts?since=yesterday", status=400)


def test_hostile_device_ids_and_evidence_are_escaped(console):
    base, _ = console
    for path in ("/?after=dev-09990", "/alerts?device=zz*",
                 "/device?id=" + urllib.parse.quote(HOSTILE, safe="")):
        page = _get(base, path)
        assert "<script>" not in page and "<b>root</b>" not in page
        assert "&lt;script&gt;" in page
    device = _get(base, "/device?id=" + urllib.parse.quote(HOSTILE, safe=""))
    assert [r[1] for r in _rows(device, "alerts")] == list(RULES)[::-1]
    assert [r[1:] for r in _rows(device, "hourly")] == [["1", "2", "5", "1"], ["1", "1", "10", "0"]]
    assert "no device" in _get(base, "/device?id=nobody", status=404)


def test_console_refuses_a_missing_store_in_one_line(tmp_path):
    done = subprocess.run([MICROAGENT, "console", "--store", str(tmp_path / "none.db"), "--port",
                           "0"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and not (tmp_path / "none.db").exists()
    assert done.stderr.strip() == ("microagent: error: --store %s: no such store (`microagent "
                                   "alerts --store` makes it)" % (tmp_path / "none.db"))
