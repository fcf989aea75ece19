"""The console's pages over the cloud store: the fleet (a page of devices at a time), the
alerts with their filters, and one device. Each page asks the store for what it shows and no
more (keyset paging, 100 rows); everything from a device is escaped."""
import types
import urllib.parse

from host_sim.cloud.alerts.messages import format_time
from host_sim.cloud.alerts.rules import SEVERITIES
from host_sim.cloud.console.charts import bar_chart, quota_bar
from host_sim.metering import FREE_TIERS, TIERS, block_size, daily_quota
from host_sim.cloud.console.pages import (ALERTS_PER_DEVICE, alert_rows, chart_end, esc,
                                          incidents_section, number, page, quote,
                                          recommendations_section, table, when)

PAGE_SIZE = 100
RECOMMENDATIONS_SHOWN = 200   # the fleet page's first ones; `alerts --store` lists them all
CHART_HOURS = 168
FLEET_ALERTS = 50             # rows of the fleet page's alerts, the most severe first
FLEET_ALERTS_READ = 500       # rows read at a time to choose them
FLEET_READS = 10              # reads at most, per severity


def _link(path, **query):
    return esc(path + "?" + urllib.parse.urlencode({k: v for k, v in query.items()
                                                    if v not in (None, "")}))


def _as_shown(row):
    d = dict(row)
    d["first"], d["last"] = format_time(row["first"]), format_time(row["last"])
    return d


def _per_day(total, hours):
    return total * 24.0 / hours if hours else 0.0


def _select(name, options, chosen, blank="any"):
    return '<select name="%s"><option value="">%s</option>%s</select>' % (
        name, blank, "".join('<option%s>%s</option>' % (" selected" if o == chosen else "", esc(o))
                             for o in options))


def _chart_window(last_hour, now=None):
    """(first hour, last hour) of a chart: the 168 hours up to the newest hour with data, but
    never past the hub's present (a device may date its events in the year 9999)."""
    end = chart_end(now) if last_hour is None else min(int(last_hour), chart_end(now))
    return end - (CHART_HOURS - 1) * 3600, end


def fleet_alerts(store):
    """The fleet page's alerts: the most severe first, then the newest, at most
    ALERTS_PER_DEVICE of a device: (rows, {device: alerts read past those}). The store is read
    FLEET_ALERTS_READ rows at a time, at most FLEET_READS times a severity, so one device's
    thousands of alerts cost a bounded read and hide no other device's."""
    rows, seen, more = [], {}, {}
    for severity in SEVERITIES:
        after = None
        for _ in range(FLEET_READS):
            read = store.alerts(severity=severity, after=after, limit=FLEET_ALERTS_READ)
            for row in read:
                device = row["device"]
                seen[device] = seen.get(device, 0) + 1
                if seen[device] > ALERTS_PER_DEVICE:
                    more[device] = more.get(device, 0) + 1
                elif len(rows) < FLEET_ALERTS:
                    rows.append(row)
            if len(read) < FLEET_ALERTS_READ or len(rows) >= FLEET_ALERTS:
                break
            after = (read[-1]["first"], read[-1]["id"])
        if len(rows) >= FLEET_ALERTS:
            break
    shown = {row["device"] for row in rows}
    return rows, {device: n for device, n in more.items() if device in shown}


def fleet_page(store, tier, units, tag=None, after=None, now=None):
    quota = daily_quota(tier, units)
    metered = "free_blocks" if tier in FREE_TIERS else "blocks"   # the tier's own block size
    unit = "%g KB blocks" % (block_size(tier) / 1024.0)
    summary = store.fleet_summary()
    rows = store.devices_page(after=after, tag=tag or None, limit=PAGE_SIZE + 1)
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    blocks_day = _per_day(summary[metered], summary["hours"])
    tier_options = "".join('<option%s>%s</option>' % (" selected" if t == tier else "", t)
                           for t in TIERS)
    body = [incidents_section(store.incidents(limit=FLEET_ALERTS_READ), limit=50)
            if after is None else ""]
    body.append('<form method="get" action="/">IoT Hub tier <select name="tier">%s</select> '
                'units <input name="units" type="number" min="1" value="%d" style="width:4em"> '
                'tag %s <button>apply</button></form>' % (tier_options, units,
                                                          _select("tag", store.tags(), tag)))
    severities = summary["alerts"]
    body.append('<div class="cards"><div class="card"><b>%s</b>devices</div>'
                '<div class="card"><b>%s</b>messages</div>'
                '<div class="card"><b>%s</b>%s per day (the fleet, over the hours it '
                'sent)</div><div class="card"><b>%s</b>of the %s &times; %d quota (%s/day)<br>%s'
                '</div><div class="card"><b>%s</b><a href="/alerts">alerts</a> (%s)</div></div>'
                % (number(summary["devices"]), number(summary["messages"]),
                   number(round(blocks_day)), unit, "%.2f%%" % (100.0 * blocks_day / quota), esc(tier),
                   units, number(quota), quota_bar(blocks_day, quota),
                   number(sum(severities.values())),
                   esc(", ".join("%d %s" % (n, s) for s, n in sorted(severities.items())))
                   or "none"))
    if summary["last_hour"] is not None:
        first, end = _chart_window(summary["last_hour"], now)
        points = store.hourly(since_hour=first)
        body.append("<h2>Traffic over time (device time up to the hub's present, per hour)</h2>")
        body.append(bar_chart([(p[0], p[3]) for p in points], "events per hour", "events",
                              end=end))
        body.append(bar_chart([(p[0], p[2]) for p in points], "4 KB blocks per hour", "blocks",
                              color="#8e5ea2", end=end))
    cells = []
    for d in rows:
        blocks = _per_day(d[metered], d["hours"])
        high = d["alerts"].get("High", 0)
        cells.append(['<a href="/device?id=%s">%s</a>%s' % (
                          esc(quote(d["device"])), esc(d["device"]),
                          ' <span class="failed">(%d unreadable)</span>' % d["skipped"]
                          if d["skipped"] else ""),
                      esc(when(d["last_arrival"])), esc(when(d["last_time"])),
                      number(round(_per_day(d["messages"], d["hours"]))), number(round(blocks)),
                      "%.3f%%" % (100.0 * blocks / quota), number(d["dropped"]),
                      number(sum(d["alerts"].values())) + (" (%d High)" % high if high else "")])
    body.append("<h2>Devices%s</h2>" % (" tagged %s" % esc(tag) if tag else ""))
    body.append(table(["device", "last seen (hub)", "last event (device)", "messages/day",
                       unit + "/day", "of quota", "dropped events", "alerts"], cells,
                      numeric=(3, 4, 5, 6), row_id="devices"))
    if more:
        body.append('<p><a id="next" href="%s">next %d devices &raquo;</a></p>' % (
            _link("/", tier=tier, units=units, tag=tag, after=rows[-1]["device"]), PAGE_SIZE))
    if after is None:
        advice = store.recommendations(limit=RECOMMENDATIONS_SHOWN)
        body.append(recommendations_section([types.SimpleNamespace(**r) for r in advice], True))
    shown, more = fleet_alerts(store)
    headers, cells = alert_rows([_as_shown(a) for a in shown], True)
    body.append('<h2>Alerts, the most severe first, at most %d of a device (<a href="/alerts">'
                'all, with filters</a>)</h2>' % ALERTS_PER_DEVICE
                + table(headers, cells, numeric=(6,), row_id="alerts"))
    if more:
        body.append('<ul id="more-alerts">%s</ul>' % "".join(
            '<li><a href="%s">%s%s more alerts of %s</a></li>' % (
                _link("/alerts", device=device.replace("*", "?")), number(n),
                "+" if n >= FLEET_ALERTS_READ else "", esc(device))
            for device, n in sorted(more.items())))
    return page("fleet", "".join(body))


def alerts_page(store, filters, after=None):
    """FILTERS: severity, rule, tag, device (glob), since, until (epoch s) as given (None: any);
    AFTER: (first time, id) of the previous page's last row."""
    rows = store.alerts(severity=filters["severity"], rule=filters["rule"], tag=filters["tag"],
                        device=filters["device"], since=filters["since"], until=filters["until"],
                        after=after, limit=PAGE_SIZE + 1)
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    shown = {k: filters["text"].get(k) for k in ("severity", "rule", "tag", "device", "since",
                                                  "until")}
    body = ['<form method="get" action="/alerts">severity %s rule %s tag %s device '
            '<input name="device" value="%s" placeholder="glob"> since '
            '<input name="since" value="%s" placeholder="2026-01-01T00:00:00Z"> until '
            '<input name="until" value="%s"> <button>filter</button></form>'
            % (_select("severity", SEVERITIES, shown["severity"]),
               _select("rule", store.rules(), shown["rule"]), _select("tag", store.tags(),
                                                                     shown["tag"]),
               esc(shown["device"] or ""), esc(shown["since"] or ""), esc(shown["until"] or ""))]
    headers, cells = alert_rows([_as_shown(a) for a in rows], True)
    body.append(table(headers, cells, numeric=(6,), row_id="alerts"))
    if more:
        last = rows[-1]
        body.append('<p><a id="next" href="%s">next %d alerts &raquo;</a></p>' % (
            _link("/alerts", after="%r:%s" % (last["first"], last["id"]), **shown), PAGE_SIZE))
    return page("alerts", "".join(body))


def device_page(store, row, after=None, now=None):
    """ROW's device: its charts and hourly table (the 168 hours up to its newest, never past
    the hub's present) and its alerts, PAGE_SIZE from AFTER ((first time, id) keyset)."""
    device = row["device"]
    body = ['<p class="muted">%s messages read, %s unreadable &middot; last event %s UTC, last '
            'seen by the hub %s UTC &middot; %s partition %s &middot; tags: %s</p>'
            % (number(row["messages"]), number(row["skipped"]), esc(when(row["last_time"])),
               esc(when(row["last_arrival"])), esc(row["source"]), esc(row["partition"]),
               esc(", ".join(row["tags"])) or "none")]
    last = row["last_time"]
    first, end = _chart_window(None if last is None else int(last // 3600) * 3600, now)
    points = [p for p in store.hourly(device=device, since_hour=first) if p[0] <= end]
    body.append(bar_chart([(p[0], p[3]) for p in points], "events per hour", "events"))
    body.append(bar_chart([(p[0], p[2]) for p in points], "4 KB blocks per hour", "blocks",
                          color="#8e5ea2"))
    body.append(bar_chart([(p[0], p[4]) for p in points], "dropped events per hour", "events",
                          color="#c62828"))
    alerts = store.alerts(device_id=device, after=after, limit=PAGE_SIZE + 1)
    headers, cells = alert_rows([_as_shown(a) for a in alerts[:PAGE_SIZE]], False)
    body.append("<h2>Alerts (newest first)</h2>"
                + table(headers, cells, numeric=(5,), row_id="alerts"))
    if len(alerts) > PAGE_SIZE:
        shown = alerts[PAGE_SIZE - 1]
        body.append('<p><a id="next" href="%s">next %d alerts &raquo;</a> &middot; '
                    '<a href="%s">all alerts of this device, with filters</a></p>'
                    % (_link("/device", id=device, after="%r:%s" % (shown["first"], shown["id"])),
                       PAGE_SIZE, _link("/alerts", device=device.replace("*", "?"))))
    body.append("<h2>Per hour</h2>" + table(
        ["hour (UTC)", "messages", "4 KB blocks", "events", "dropped events"],
        [[esc(when(p[0])), number(p[1]), number(p[2]), number(p[3]), number(p[4])]
         for p in points[::-1]], numeric=(1, 2, 3, 4), row_id="hourly"))
    return page("device " + device, "".join(body))
