"""The console against one hostile device (plain functions and HubSite, no browser): charts
cost the same whatever dates a device sends, pages are bounded and paginate, the model takes
values of any type, pages render outside the model's lock, and an honest device's High alert
stays on the fleet page."""
import json
import re
import threading
import tracemalloc
from urllib.parse import unquote

from host_sim.cloud.alerts.engine import Alert
from host_sim.cloud.alerts.messages import format_time
from host_sim.cloud.alerts.rules import load_rules
from host_sim.cloud.alerts.sources import HubStore
from host_sim.cloud.console import charts, pages
from host_sim.cloud.console.model import DeviceView, FleetModel
from host_sim.cloud.console.server import HubSite
from host_sim.cloud.console.store_site import StoreSite
from host_sim.cloud.store import open_store
from host_sim.cloud.store.base import Batch
from hub_emulator import store
from hub_emulator.database import open_db

from alert_helpers import START, login_failed, merged, quiet, replay

JSON = {"$.ct": "application/json"}
YEAR_9999 = 253402297200


def test_a_chart_over_1970_to_9999_draws_168_hours_in_little_memory():
    points = [(0, 5), (3600 * 24 * 365 * 1000, 1), (YEAR_9999, 7)]
    tracemalloc.start()
    try:
        svg = charts.bar_chart(points, "events per hour", "events")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert svg.count("<rect") == 168
    assert peak < 2 * 1024 * 1024
    # up to an end (the hub's present): the future hours are not drawn
    buckets = charts.last_buckets(points, end=3600 * 24 * 365 * 1000)
    assert len(buckets) == 168 and buckets[-1] == (3600 * 24 * 365 * 1000, 1)
    assert charts.last_buckets([(7200, 2), (3600, 1)]) == [(3600, 1), (7200, 2)]


def _message(name, items, stamp, agent="hostile-agent"):
    return {"AgentId": agent, "Events": [{"Name": name, "Category": "Triggered",
                                          "TimestampUTC": stamp, "Payload": items}]}


def _hub(tmp_path):
    """A hub store with an honest device's brute force (replayed by the host engine)."""
    data = tmp_path / "hub"
    db = open_db(str(data))
    burst = [login_failed(START + 5400 + 5 * i, "203.0.113.9") for i in range(10)]
    for body in replay(merged(quiet(hours=2, seed=3), burst), tmp_path):
        store.add(db, "honest", "devices/honest/messages/events/", JSON, body.encode())
    return data, db


def _hostile(model, message, arrival):
    """MESSAGE of the hostile device fed to MODEL as it is (no reader's validation before it:
    the model must not depend on one)."""
    with model.lock:
        view = model.devices.get("hostile")
        if view is None:
            view = model.devices["hostile"] = DeviceView("hostile")
        view.add(message, len(json.dumps(message)), arrival)
        model.evaluation.engine.feed("hostile", {}, message, arrival)


def _fleet(tmp_path):
    data, db = _hub(tmp_path)
    model = FleetModel(HubStore(str(data)), load_rules(None))
    model.refresh()
    now = model.devices["honest"].last_seen
    for n in range(20):     # 400 collectors a message, 20 messages: thousands of would-be alerts
        items = [{"collector": "c%d-%03d" % (n, i), "dropped": 1, "evicted": 0, "cache_size": 8}
                 for i in range(400)]
        _hostile(model, _message("DroppedEvents", items, format_time(START + n)), now + n)
    poison = [{"hardware_vendor": ["x"], "nics": 5, "os_dist": {"a": 1}}]
    _hostile(model, _message("SystemInformation", poison, "9999-12-31T23:59:59.000Z"), now)
    processes = [{"commandline": ["sh", "-c"], "user_id": {"u": 1}, "hit_count": 1,
                  "timestamp": "0001-01-01T00:00:00+14:00"}]
    _hostile(model, _message("ProcessCreate", processes, format_time(YEAR_9999)), now)
    connections = [{"remote_address": {"ip": 1}, "local_port": [1], "direction": ["out"],
                    "bytes_out": 5, "extended_properties": {"host_name": ["h"]}}]
    _hostile(model, _message("ConnectionCreate", connections, format_time(START)), now)
    return model, now


def test_the_fleet_page_keeps_the_honest_high_alert_and_stays_small(tmp_path):
    model, now = _fleet(tmp_path)
    site = HubSite(model)
    status, body = site.get("/", {})
    assert status == 200
    assert len(body) < 300 * 1024
    alerts = body[body.index('id="alerts"'):]
    rows = re.findall(r"<tr>(.*?)</tr>", alerts[:alerts.index("</table>")])[1:]
    honest = [i for i, row in enumerate(rows) if "brute-force" in row and "id=honest" in row]
    assert honest and all("sev-High" in row for row in rows[:honest[0] + 1])
    assert sum(1 for row in rows if "device?id=hostile" in row) == pages.ALERTS_PER_DEVICE
    assert re.search(r"[\d,]+ more alerts of hostile", body)
    # the honest device's traffic is on the chart: the hostile dates do not move its end
    assert charts.last_buckets([(t, 1) for t, _ in model.fleet_snapshot()["hourly"]],
                               end=pages.chart_end())[-1][0] < YEAR_9999
    assert site.get("/", {"page": "2"})[0] == 200
    assert site.get("/", {"page": "x"})[0] == 200


def test_the_hostile_device_page_is_bounded_paginated_and_says_what_was_left_out(tmp_path):
    model, now = _fleet(tmp_path)
    engine = model.evaluation.engine
    lines = [a for a in engine.alerts.values() if a.device == "hostile"]
    assert 0 < len(lines) <= 50
    site = HubSite(model)
    status, body = site.get("/device", {"id": "hostile"})
    assert status == 200 and len(body) < 1024 * 1024
    assert "alerts past the hourly budget" in body       # the left-out counters
    assert "System information" in body and "nics" in body
    assert "last event 9999-12-31 23:59:59 UTC" in body   # clamped for display
    status, second = site.get("/device", {"id": "hostile", "page": "2"})
    assert status == 200
    assert site.get("/device", {"id": "nobody"})[0] == 404


def test_alert_pages_of_a_device_with_hundreds_of_alerts(tmp_path):
    model, now = _fleet(tmp_path)
    engine = model.evaluation.engine
    for n in range(12):     # twelve hours of arrival, a budget each
        items = [{"collector": "h%d-%03d" % (n, i), "dropped": 1, "evicted": 0, "cache_size": 8}
                 for i in range(60)]
        _hostile(model, _message("DroppedEvents", items, format_time(START)), now + 3600 * (n + 1))
    total = sum(1 for a in engine.alerts.values() if a.device == "hostile")
    assert total > pages.PAGE_SIZE
    site = HubSite(model)
    first = site.get("/device", {"id": "hostile"})[1]
    last_page = (total + pages.PAGE_SIZE - 1) // pages.PAGE_SIZE
    last = site.get("/device", {"id": "hostile", "page": str(last_page)})[1]

    def rows(body):
        table = body[body.index('id="alerts"'):]
        return table[:table.index("</table>")].count("<tr>") - 1
    assert rows(first) == pages.PAGE_SIZE
    assert rows(last) == total - (last_page - 1) * pages.PAGE_SIZE
    assert 'class="next"' in first and 'class="next"' not in last
    assert "page=%d" % (last_page - 1) in last


def test_pages_render_outside_the_model_lock(tmp_path, monkeypatch):
    model, now = _fleet(tmp_path)
    free_while_drawing = []
    drawn = charts.bar_chart

    def try_the_lock(got):
        got.append(model.lock.acquire(blocking=False))
        if got[0]:
            model.lock.release()

    def watching(*args, **kwargs):
        got = []
        other = threading.Thread(target=try_the_lock, args=(got,))
        other.start()
        other.join()
        free_while_drawing.append(got[0])
        return drawn(*args, **kwargs)

    monkeypatch.setattr(pages, "bar_chart", watching)
    site = HubSite(model)
    assert site.get("/", {})[0] == 200
    assert site.get("/device", {"id": "hostile"})[0] == 200
    assert free_while_drawing and all(free_while_drawing)


def test_a_device_page_with_nics_of_the_wrong_type(tmp_path):
    data, db = _hub(tmp_path)
    model = FleetModel(HubStore(str(data)), load_rules(None))
    model.refresh()
    for nics in (5, "eth0", [5, {"type": "ETH", "info": [1]}], {"x": 1}):
        _hostile(model, _message("SystemInformation", [{"nics": nics, "os_dist": "x"}],
                                 format_time(START + len(str(nics)))), START)
        status, body = HubSite(model).get("/device", {"id": "hostile"})
        assert status == 200 and 'id="system"' in body


def test_the_store_console_keeps_the_honest_high_alert_and_pages_a_device(tmp_path):
    batch = Batch()
    for device, last in (("honest", START + 7200), ("hostile", YEAR_9999)):
        batch.devices.append((device, "hub", 0, last, START + 7300, 10, 0, None))
    # the honest device's last three hours, up to the hub's present
    batch.hourly += [("honest", pages.chart_end() - 3600 * h, 1, 1, 5, 0, 1) for h in range(3)]
    batch.hourly += [("hostile", YEAR_9999 - 3600 * h, 1, 1, 9, 0, 1) for h in range(300)]
    brute = Alert("honest", {"id": "brute-force", "severity": "High"}, "203.0.113.9",
                  START + 5400, 5)
    brute.add(START + 5400, {"remote_address": "203.0.113.9"})
    batch.alerts.append(brute)
    for n in range(600):      # future-dated High alerts: newest first would show only these
        alert = Alert("hostile", {"id": "brute-force", "severity": "High"}, "k%d" % n,
                      YEAR_9999 - n, 5)
        alert.add(YEAR_9999 - n, {"n": n})
        batch.alerts.append(alert)
    cloud = open_store(str(tmp_path / "cloud.db"))
    cloud.write(batch)
    site = StoreSite(cloud)
    status, body = site.get("/", {})
    assert status == 200
    table_html = body[body.index('id="alerts"'):]
    table_html = table_html[:table_html.index("</table>")]
    assert "id=honest" in table_html and "203.0.113.9" in table_html
    assert table_html.count("id=hostile") == pages.ALERTS_PER_DEVICE
    assert "more alerts of hostile" in body
    start = body.index("Traffic over time")
    chart = body[start:body.index("</svg>", start)]
    assert chart.count("<rect") == 3 and "5 events<" in chart   # not the year 9999's hours
    assert ">9 events<" not in chart
    status, device = site.get("/device", {"id": "hostile"})
    assert status == 200 and device.count("<tr>") < 300
    after = re.search(r'<a id="next" href="/device\?([^"]+)"', device).group(1)
    query = dict(pair.split("=", 1) for pair in after.replace("&amp;", "&").split("&"))
    status, second = site.get("/device", {k: unquote(v) for k, v in query.items()})
    assert status == 200 and "n=100<" in second and "n=99<" not in second and "n=0<" not in second
    cloud.close()
