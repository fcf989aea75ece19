"""The console's pages over the cloud store: the fleet (a page of devices at a time), the
alerts with their filters, and one device. Each page asks the store for what it shows and no
more (keyset paging, 100 rows); everything from a device is escaped."""
import types
import urllib.parse

from host_sim.cloud.alerts.messages import format_time
from host_sim.cloud.alerts.rules import SEVERITIES
from host_sim.cloud.console.charts import bar_chart, quota_bar
from host_sim.metering import FREE_TIERS, TIERS, block_size, daily_quota
from host_sim.cloud.console.pages import (alert_rows, esc, incidents_section, number, page,
                                          quote, recommendations_section, table, when)

PAGE_SIZE = 100
RECOMMENDATIONS_SHOWN = 200   # the fleet page's first ones; `alerts --store` lists them all
CHART_HOURS = 168


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


def fleet_page(store, tier, units, tag=None, after=None):
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
    body = [incidents_section(store.incidents(limit=51), limit=50) if after is None else ""]
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
        points = store.hourly(since_hour=summary["last_hour"] - (CHART_HOURS - 1) * 3600)
        body.append("<h2>Traffic over time (device time, per hour)</h2>")
        body.append(bar_chart([(p[0], p[3]) for p in points], "events per hour", "events"))
        body.append(bar_chart([(p[0], p[2]) for p in points], "4 KB blocks per hour", "blocks",
                              color="#8e5ea2"))
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
    recent = store.alerts(limit=20)
    headers, cells = alert_rows([_as_shown(a) for a in recent], True)
    body.append('<h2>Newest alerts (<a href="/alerts">all, with filters</a>)</h2>'
                + table(headers, cells, numeric=(6,), row_id="alerts"))
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


def device_page(store, row):
    device = row["device"]
    body = ['<p class="muted">%s messages read, %s unreadable &middot; last event %s UTC, last '
            'seen by the hub %s UTC &middot; %s partition %s &middot; tags: %s</p>'
            % (number(row["messages"]), number(row["skipped"]), esc(when(row["last_time"])),
               esc(when(row["last_arrival"])), esc(row["source"]), esc(row["partition"]),
               esc(", ".join(row["tags"])) or "none")]
    points = store.hourly(device=device)[-CHART_HOURS:]
    body.append(bar_chart([(p[0], p[3]) for p in points], "events per hour", "events"))
    body.append(bar_chart([(p[0], p[2]) for p in points], "4 KB blocks per hour", "blocks",
                          color="#8e5ea2"))
    body.append(bar_chart([(p[0], p[4]) for p in points], "dropped events per hour", "events",
                          color="#c62828"))
    alerts = store.alerts(device_id=device, limit=PAGE_SIZE + 1)
    headers, cells = alert_rows([_as_shown(a) for a in alerts[:PAGE_SIZE]], False)
    body.append("<h2>Alerts</h2>" + table(headers, cells, numeric=(5,), row_id="alerts"))
    if len(alerts) > PAGE_SIZE:
        body.append('<p><a href="%s">all alerts of this device</a></p>'
                    % _link("/alerts", device=device.replace("*", "?")))
    body.append("<h2>Per hour</h2>" + table(
        ["hour (UTC)", "messages", "4 KB blocks", "events", "dropped events"],
        [[esc(when(p[0])), number(p[1]), number(p[2]), number(p[3]), number(p[4])]
         for p in points[::-1]], numeric=(1, 2, 3, 4), row_id="hourly"))
    return page("device " + device, "".join(body))
