"""The console's HTML pages: the fleet, and one device. Server-side rendered, no scripts.
Every list is bounded: alerts and devices PAGE_SIZE a page (?page=N), tables TABLE_ROWS."""
import collections
import html
import time
from urllib.parse import urlencode

from host_sim.cloud.alerts.incidents import correlate
from host_sim.cloud.alerts.messages import format_time
from host_sim.cloud.console.charts import bar_chart, quota_bar
from host_sim.metering import FREE_TIERS, TIERS, block_size, daily_quota

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2733;background:#f4f6f8}
header{background:#1d3557;color:#fff;padding:10px 20px}header a{color:#fff}
main{padding:12px 20px;max-width:1400px}
h1{font-size:20px;margin:0}h2{font-size:16px;margin:22px 0 6px}
table{border-collapse:collapse;background:#fff;width:100%;margin-bottom:8px}
th,td{border:1px solid #d5dbe1;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#e9eef3}td.n{text-align:right;font-variant-numeric:tabular-nums}
.sev-High{color:#fff;background:#c62828}.sev-Medium{background:#f9a825}
.sev-Low{background:#cfe3f7}.sev-Informational{background:#eee}
.failed{color:#c62828;font-weight:600}.muted{color:#667}
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{background:#fff;border:1px solid #d5dbe1;padding:8px 12px}
.card b{font-size:20px;display:block}
.chart{background:#fff;border:1px solid #d5dbe1;margin:4px 8px 4px 0}
.chart-title{font-weight:600;font-size:12px}.tick{font-size:10px;fill:#556}.axis{stroke:#888}
details summary{cursor:pointer}code{font-size:12px;word-break:break-all}
td{overflow-wrap:anywhere}
"""


def esc(value):
    return html.escape("" if value is None else str(value))


def when(seconds):
    return format_time(seconds)[:19].replace("T", " ") if seconds is not None else "-"


def number(value):
    return "{:,}".format(value) if isinstance(value, int) else "{:,.1f}".format(value)

TABLE_ROWS = 100         # rows of a device's other tables (dropped events)
REPORT_ROWS = 500        # rows of a Baseline or SBoM report shown


def page(title, body):
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            '<title>%s</title><link rel="icon" href="data:,">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<style>%s</style></head><body><header><h1><a href="/">microagent console</a> '
            '&middot; %s</h1></header><main>%s</main></body></html>'
            % (esc(title), STYLE, esc(title), body))


def table(headers, rows, numeric=(), row_id=None):
    out = ["<table%s><thead><tr>" % (' id="%s"' % row_id if row_id else "")]
    out += ["<th>%s</th>" % esc(h) for h in headers]
    out.append("</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>" + "".join(
            '<td class="n">%s</td>' % cell if i in numeric else "<td>%s</td>" % cell
            for i, cell in enumerate(row)) + "</tr>")
    if not rows:
        out.append('<tr><td colspan="%d" class="muted">none</td></tr>' % len(headers))
    out.append("</tbody></table>")
    return "".join(out)


def alert_rows(alerts, with_device):
    """ALERTS: dicts as Alert.as_dict() gives them (first and last as text)."""
    rows = []
    for d in alerts:
        evidence = "".join("<li><code>%s</code></li>" % esc(compact(item)) for item in d["evidence"])
        cells = ['<span class="sev-%s">%s</span>' % (esc(d["severity"]), esc(d["severity"]))]
        if with_device:
            cells.append('<a href="/device?id=%s">%s</a>' % (esc(quote(d["device"])), esc(d["device"])))
        cells += [esc(d["rule"]), esc(d["title"]), esc(d["first"][:19].replace("T", " ")),
                  esc(d["last"][:19].replace("T", " ")), number(d["count"]),
                  "%s<details><summary>evidence (%d)</summary><ul>%s</ul></details>"
                  % (esc(d["what_to_do"]), len(d["evidence"]), evidence)]
        rows.append(cells)
    headers = ["severity"] + (["device"] if with_device else []) + [
        "rule", "alert", "first", "last", "count", "what to do"]
    return headers, rows


INCIDENTS_PER_DEVICE = 3   # of one device on the fleet page; the rest is on its page
TIMELINE_STEPS = 50        # steps of an incident's timeline shown


def per_device(items, device_of, limit, most=INCIDENTS_PER_DEVICE):
    """The first LIMIT of ITEMS (in their order) with at most MOST of a device, and how many
    of each shown device were left out: (kept, {device: left out})."""
    kept, seen, left = [], collections.Counter(), collections.Counter()
    for item in items:
        device = device_of(item)
        seen[device] += 1
        if seen[device] > most:
            left[device] += 1
        elif len(kept) < limit:
            kept.append(item)
    shown = {device_of(item) for item in kept}
    return kept, {device: n for device, n in left.items() if device in shown}


def incidents_section(records, limit=50, total=None):
    """The fleet page's opening: incidents (records as Incident.as_dict() gives them) by
    severity then recency, at most INCIDENTS_PER_DEVICE of a device, each with its timeline
    (its first TIMELINE_STEPS steps). TOTAL: how many incidents there are, when known."""
    if not records:
        return "<h2>Incidents</h2><p>No incident: no Medium or High alert.</p>"
    records, left = per_device(records, lambda r: r["device"], limit)
    rows = []
    for r in records:
        steps = r["timeline"][:TIMELINE_STEPS]
        timeline = "".join("<li>%s <span class=\"sev-%s\">%s</span> %s: %s</li>" % (
            esc(step["time"][:19].replace("T", " ")), esc(step["severity"]), esc(step["severity"]),
            esc(step["rule"]), esc(step["title"])) for step in steps)
        if len(r["timeline"]) > len(steps):
            timeline += "<li>%s more</li>" % number(len(r["timeline"]) - len(steps))
        rows.append(['<span class="sev-%s">%s</span>' % (esc(r["severity"]), esc(r["severity"])),
                     '<a href="/device?id=%s">%s</a>' % (esc(quote(r["device"])), esc(r["device"])),
                     "%s<details><summary>timeline (%d)</summary><ul>%s</ul></details>"
                     % (esc(r["title"]), r["alerts"], timeline),
                     esc(r["first"][:19].replace("T", " ")), esc(r["last"][:19].replace("T", " ")),
                     number(r["alerts"]), esc(", ".join(r["tactics"]))])
    shown = len(rows) + sum(left.values())
    return ("<h2>Incidents (by severity, newest first, at most %d of a device)</h2>"
            % INCIDENTS_PER_DEVICE
            + table(["severity", "device", "incident", "first", "last", "alerts", "tactics"],
                    rows, numeric=(5,), row_id="incidents")
            + "".join('<p class="muted">%s more incidents of <a href="/device?id=%s">%s</a></p>'
                      % (number(n), esc(quote(device)), esc(device))
                      for device, n in sorted(left.items()))
            + ("<p>More incidents than these: <code>microagent incidents</code> lists them "
               "all.</p>" if (total if total is not None else shown) > len(rows) else ""))


def compact(item):
    """A dict as k=v text; anything else as its text."""
    if not isinstance(item, dict):
        return "" if item is None else str(item)
    return ", ".join("%s=%s" % (k, v) for k, v in item.items() if v not in (None, "", {}))


def quote(text):
    from urllib.parse import quote
    return quote(text, safe="")


PAGE_SIZE = 100          # rows of an alerts list or a devices table per page (?page=N)
ALERTS_PER_DEVICE = 5    # of one device on the fleet page's alerts; the rest is "N more"
SEVERITY_RANK = {"High": 0, "Medium": 1, "Low": 2, "Informational": 3}


def page_number(text):
    """?page=N as a number from 1; anything else is page 1."""
    return int(text) if isinstance(text, str) and text.isdigit() and 0 < len(text) < 7 \
        and int(text) > 0 else 1


def by_severity(alerts):
    """ALERTS (Alert objects), the most severe first, then the newest."""
    return sorted(alerts, key=lambda a: (SEVERITY_RANK.get(a.severity, 9), -a.last, a.device,
                                         a.rule, a.key))


def chart_end(now=None):
    """The last hour a chart shows: the hub's present hour (a device may date its events in
    the future; those hours are kept but not drawn)."""
    now = time.time() if now is None else now
    return int(now // 3600) * 3600


def pager(path, page_no, more, **query):
    """Links to the previous and next page of PATH."""
    links = []
    if page_no > 1:
        links.append('<a class="prev" href="%s">&laquo; page %d</a>' % (
            esc(path + "?" + urlencode(dict(query, page=page_no - 1))), page_no - 1))
    if more:
        links.append('<a class="next" href="%s">page %d &raquo;</a>' % (
            esc(path + "?" + urlencode(dict(query, page=page_no + 1))), page_no + 1))
    return "<p>%s</p>" % " &middot; ".join(links) if links else ""


def fleet_alerts(alerts, page_no):
    """The fleet page's alerts: by severity then the newest, at most ALERTS_PER_DEVICE of each
    device (a row "N more" links to its page), PAGE_SIZE rows of page PAGE_NO. Returns
    (alert dicts, [(device, alerts left out)] of the devices on the page, whether a next page
    exists)."""
    shown, left = per_device(by_severity(alerts), lambda a: a.device, len(alerts),
                             ALERTS_PER_DEVICE)
    rows = [a.as_dict() for a in shown[(page_no - 1) * PAGE_SIZE:page_no * PAGE_SIZE]]
    on_page = {d["device"] for d in rows}
    extra = [(device, n) for device, n in sorted(left.items()) if device in on_page]
    return rows, extra, len(shown) > page_no * PAGE_SIZE


def fleet_page(model, tier, units, page_text=None, now=None):
    page_no = page_number(page_text)
    snapshot = model.fleet_snapshot()      # copied under the model's lock; rendered after it
    quota = daily_quota(tier, units)
    free = tier in FREE_TIERS          # the tier's own block size (host_sim/metering.py)
    unit = "%g KB blocks" % (block_size(tier) / 1024.0)
    devices = sorted(snapshot["devices"], key=lambda v: v["device"])
    alerts = snapshot["alerts"]
    total_blocks_day = sum((v["free_blocks"] if free else v["blocks"]) / v["days"]
                           for v in devices)
    points = snapshot["hourly"]
    by_severity_count = collections.Counter(alert.severity for alert in alerts)
    high = collections.Counter(alert.device for alert in alerts if alert.severity == "High")
    alert_counts = collections.Counter(alert.device for alert in alerts)
    tier_options = "".join('<option%s>%s</option>' % (" selected" if t == tier else "", t) for t in TIERS)
    incidents = correlate(alerts)[0]
    chosen, _ = per_device(incidents, lambda i: i.device, 51)
    body = [incidents_section([i.as_dict() for i in chosen], total=len(incidents))]
    body.append('<form method="get" action="/">IoT Hub tier <select name="tier">%s</select> units '
                '<input name="units" type="number" min="1" value="%d" style="width:4em"> '
                '<button>apply</button></form>' % (tier_options, units))
    body.append('<div class="cards"><div class="card"><b>%d</b>devices</div>'
                '<div class="card"><b>%s</b>messages</div>'
                '<div class="card"><b>%s</b>%s per day (%s)</div>'
                '<div class="card"><b>%s</b>of the %s &times; %d quota (%s/day)<br>%s</div>'
                '<div class="card"><b>%d</b>alerts (%s)</div></div>'
                % (len(devices), number(sum(v["messages"] for v in devices)),
                   number(round(total_blocks_day)), unit,
                   "all devices, at the rate each device has sent",
                   "%.2f%%" % (100.0 * total_blocks_day / quota), esc(tier), units,
                   number(quota), quota_bar(total_blocks_day, quota), len(alerts),
                   ", ".join("%d %s" % (n, s) for s, n in sorted(by_severity_count.items()))
                   or "none"))
    end = chart_end(now)
    body.append("<h2>Traffic over time (device time up to the hub's present, per hour)</h2>")
    body.append(bar_chart([(t, r[2]) for t, r in points], "events per hour", "events", end=end))
    body.append(bar_chart([(t, r[1]) for t, r in points], "4 KB blocks per hour", "blocks",
                          color="#8e5ea2", end=end))
    rows = []
    for v in devices[(page_no - 1) * PAGE_SIZE:page_no * PAGE_SIZE]:
        per_day = (v["free_blocks"] if free else v["blocks"]) / v["days"]
        rows.append(['<a href="/device?id=%s">%s</a>%s' % (
                         esc(quote(v["device"])), esc(v["device"]),
                         ' <span class="failed">(%d unreadable)</span>' % v["skipped"]
                         if v["skipped"] else ""),
                     esc(when(v["last_seen"])), esc(when(v["last_time"])),
                     number(round(v["messages"] / v["days"])), number(round(per_day)),
                     "%.3f%%" % (100.0 * per_day / quota),
                     number(v["dropped"]),
                     number(alert_counts[v["device"]]) + (
                         " (%d High)" % high[v["device"]] if high[v["device"]] else "")])
    body.append("<h2>Devices</h2>")
    body.append(table(["device", "last seen (hub)", "last event (device)", "messages/day",
                       unit + "/day", "of quota", "dropped events", "alerts"], rows,
                      numeric=(3, 4, 5, 6), row_id="devices"))
    body.append(recommendations_section(snapshot["advice"], True))
    shown, extra, more_alerts = fleet_alerts(alerts, page_no)
    headers, rows = alert_rows(shown, True)
    body.append("<h2>Alerts (the most severe first, at most %d of a device)</h2>"
                % ALERTS_PER_DEVICE + table(headers, rows, numeric=(6,), row_id="alerts"))
    if extra:
        body.append('<ul id="more-alerts">%s</ul>' % "".join(
            '<li><a href="/device?id=%s">%s more alerts of %s</a></li>'
            % (esc(quote(device)), number(n), esc(device)) for device, n in extra))
    body.append(pager("/", page_no, more_alerts or len(devices) > page_no * PAGE_SIZE,
                      tier=tier, units=units))
    return page("fleet", "".join(body))


def recommendations_section(items, with_device):
    """ITEMS: Recommendations (host_sim.cloud.alerts.recommend), everything escaped."""
    rows = []
    for r in items:
        evidence = "".join("<li><code>%s</code></li>" % esc(compact(item)) for item in r.evidence)
        rows.append(['<span class="sev-%s">%s</span>' % (esc(r.severity), esc(r.severity))]
                    + (['<a href="/device?id=%s">%s</a>' % (esc(quote(r.device)), esc(r.device))]
                       if with_device else [])
                    + [esc(r.rule), esc(r.title), "%s<details><summary>evidence (%d)</summary>"
                       "<ul>%s</ul></details>" % (esc(r.what_to_do), len(r.evidence), evidence)])
    headers = ["severity"] + (["device"] if with_device else []) + [
        "recommendation", "finding", "what to do"]
    return "<h2>Recommendations</h2>" + table(headers, rows, row_id="recommendations")


def device_page(model, device, page_text=None, now=None):
    """DEVICE's page, None when the hub has not seen it; alerts PAGE_SIZE at a time."""
    page_no = page_number(page_text)
    view = model.device_snapshot(device)   # copied under the model's lock; rendered after it
    if view is None:
        return None
    alerts = by_severity(view["alerts"])
    body = ['<p class="muted">agent %s &middot; %s messages, %s 4 KB blocks, %s bytes &middot; '
            'first event %s, last event %s UTC, last seen by the hub %s UTC%s</p>'
            % (esc(view["agent_id"]), number(view["messages"]), number(view["blocks"]),
               number(view["bytes"]), esc(when(view["first_time"])),
               esc(when(view["last_time"])), esc(when(view["last_seen"])),
               " &middot; %d unreadable messages skipped" % view["skipped"]
               if view["skipped"] else "")]
    if view["left_out"]:
        body.append('<p class="muted" id="left-out">Left out (past this device\'s limits): %s</p>'
                    % esc(", ".join("%s %s" % (what, number(n))
                                    for what, n in sorted(view["left_out"].items()))))
    points = view["hourly"]
    end = chart_end(now)
    body.append(bar_chart([(t, r[2]) for t, r in points], "events per hour", "events", end=end))
    body.append(bar_chart([(t, r[1]) for t, r in points], "4 KB blocks per hour", "blocks",
                          color="#8e5ea2", end=end))
    headers, rows = alert_rows([a.as_dict() for a in
                                alerts[(page_no - 1) * PAGE_SIZE:page_no * PAGE_SIZE]], False)
    body.append("<h2>Alerts (%s, the most severe first)</h2>" % number(len(alerts))
                + table(headers, rows, numeric=(5,), row_id="alerts"))
    body.append(pager("/device", page_no, len(alerts) > page_no * PAGE_SIZE, id=device))
    body.append(recommendations_section(view["advice"], False))
    info = view["reports"].get("SystemInformation")
    if info and info[1]:
        item = info[1][0]
        nics = item.get("nics")
        nics = "; ".join("%s %s" % (n.get("type", ""), compact(n.get("info")))
                         for n in (nics if isinstance(nics, list) else [])[:32]
                         if isinstance(n, dict))
        rows = [[esc(k), esc(item.get(k))] for k in ("hardware_vendor", "hardware_model", "os_dist",
                                                      "os_version", "os_platform", "os_arch")]
        rows.append(["nics", esc(nics)])
        body.append("<h2>System information</h2>" + table(["field", "value"], rows,
                                                           row_id="system"))
    body.append("<h2>Processes by hit count</h2>" + table(
        ["hits", "command line", "uid", "user", "last seen"],
        [[number(r["hits"]), "<code>%s</code>" % esc(r["commandline"]), esc(r["user_id"]),
          esc(r["user_name"]), esc(r["last"])] for r in view["processes"]], numeric=(0,),
        row_id="processes"))
    body.append("<h2>Connections</h2>" + table(
        ["hits", "protocol", "direction", "local", "remote", "host name", "application",
         "bytes in", "bytes out"],
        [[number(r["hits"]), esc(r["protocol"]), esc(r["direction"]), esc(r["local"]),
          esc(r["remote"]), esc(r["host_name"]), esc(r["application"]),
          number(r["bytes_in"]), number(r["bytes_out"])] for r in view["connections"]],
        numeric=(0, 7, 8), row_id="connections"))
    if view["other_rows"]:
        body.append('<p class="muted">%s</p>' % esc(", ".join(
            "%d more hits on %s not listed" % (n, what) for what, n in view["other_rows"].items())))
    counts = ", ".join("%s %d" % (op, n) for op, n in sorted(view["login_counts"].items())) \
        or "none"
    body.append("<h2>Logins</h2><p>%s</p>" % esc(counts))
    body.append(table(["time", "operation", "user", "terminal", "from"], [
        [esc(i.get("timestamp")), '<span class="%s">%s</span>' % (
            "failed" if i.get("operation") == "LoginFailed" else "", esc(i.get("operation"))),
         esc(i.get("user_name")), esc(i.get("executable")), esc(i.get("remote_address"))]
        for i in view["logins"]], row_id="logins"))
    baseline = view["reports"].get("Baseline")
    body.append("<h2>Baseline failures</h2>" + table(
        ["check", "result", "severity", "description", "remediation"],
        [[esc(i.get("check_id")), esc(i.get("check_result")), esc(i.get("severity")),
          esc(i.get("description")), esc(i.get("remediation"))]
         for i in (baseline[1] if baseline else [])[:REPORT_ROWS]], row_id="baseline"))
    sbom = view["reports"].get("SBoM")
    body.append("<h2>Software (SBoM)</h2>" + table(
        ["name", "version", "vendor"],
        [[esc(i.get("name")), esc(i.get("version")), esc(i.get("vendor"))]
         for i in sorted(sbom[1] if sbom else [], key=lambda i: str(i.get("name")))[:REPORT_ROWS]],
        row_id="sbom"))
    dropped = view["dropped"]
    body.append("<h2>Dropped events</h2>" + table(
        ["collector", "events lost"], [[esc(c), number(n)] for c, n in dropped[:TABLE_ROWS]],
        numeric=(1,), row_id="dropped"))
    if len(dropped) > TABLE_ROWS:
        body.append('<p class="muted">%d more collectors not listed</p>'
                    % (len(dropped) - TABLE_ROWS))
    return page("device " + device, "".join(body))


def not_found(text):
    return page("not found", "<p>%s</p>" % esc(text))
