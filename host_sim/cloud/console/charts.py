"""Bar charts drawn as inline SVG (nothing loaded from anywhere)."""
import html

from host_sim.cloud.alerts.messages import format_time


def _label(value):
    if value >= 1e6:
        return "%.1fM" % (value / 1e6)
    if value >= 1e4:
        return "%.0fk" % (value / 1e3)
    return "{:,}".format(int(value))


def last_buckets(points, count=168, step=3600, end=None):
    """The COUNT buckets of STEP seconds ending at the newest bucket of POINTS ([(bucket start,
    value)], any order) that is not after END: [(start, value)], zero where POINTS has none.
    Costs one pass over POINTS and COUNT lookups, however far apart its times are (a device
    may date its events 1970 and 9999)."""
    values = {}
    for t, value in points:
        if end is None or t <= end:
            values[t] = values.get(t, 0) + value
    if not values:
        return []
    first, last = int(min(values)), int(max(values))
    return [(t, values.get(t, 0))
            for t in range(max(first, last - (count - 1) * step), last + 1, step)]


def bar_chart(points, title, unit, color="#3b6ea8", width=720, height=150, step=3600, end=None):
    """POINTS: [(bucket start, epoch s), value], one per STEP seconds (missing buckets are zero).
    Returns an <svg> with a bar per bucket of the last 168 up to END, its value as a tooltip."""
    title_text = html.escape(title)
    buckets = last_buckets(points, 168, step, end)
    if not buckets:
        return ('<svg class="chart" role="img" aria-label="%s" width="%d" height="40">'
                '<text x="4" y="24">%s: no data</text></svg>' % (title_text, width, title_text))
    top = max(v for _, v in buckets) or 1
    left, bottom, plot_h = 56, 22, height - 46
    bar_w = (width - left - 8) / len(buckets)
    parts = ['<svg class="chart" role="img" aria-label="%s" width="%d" height="%d" '
             'viewBox="0 0 %d %d">' % (title_text, width, height, width, height),
             '<text x="%d" y="14" class="chart-title">%s</text>' % (left, title_text),
             '<line x1="%d" y1="%d" x2="%d" y2="%d" class="axis"/>'
             % (left, height - bottom, width - 8, height - bottom),
             '<text x="%d" y="%d" class="tick" text-anchor="end">%s</text>'
             % (left - 4, height - bottom - plot_h + 4, _label(top)),
             '<text x="%d" y="%d" class="tick" text-anchor="end">0</text>'
             % (left - 4, height - bottom)]
    for i, (t, value) in enumerate(buckets):
        h = plot_h * value / top
        parts.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s">'
                     '<title>%s: %s %s</title></rect>'
                     % (left + i * bar_w + 0.5, height - bottom - h, max(bar_w - 1, 0.5), h,
                        color, format_time(t)[:16].replace("T", " "), _label(value),
                        html.escape(unit)))
    parts.append('<text x="%d" y="%d" class="tick">%s</text>'
                 % (left, height - 6, format_time(buckets[0][0])[:16].replace("T", " ")))
    parts.append('<text x="%d" y="%d" class="tick" text-anchor="end">%s UTC</text>'
                 % (width - 8, height - 6, format_time(buckets[-1][0])[:16].replace("T", " ")))
    parts.append("</svg>")
    return "".join(parts)


def quota_bar(used, quota, width=360):
    """A horizontal bar: USED of QUOTA (per day)."""
    share = used / quota if quota else 0
    fill = "#2e7d32" if share < 0.7 else "#f9a825" if share < 1 else "#c62828"
    w = min(1.0, share) * (width - 2)
    return ('<svg class="quota" role="img" aria-label="quota" width="%d" height="18">'
            '<rect x="0.5" y="0.5" width="%d" height="17" fill="none" stroke="#888"/>'
            '<rect x="1" y="1" width="%.1f" height="16" fill="%s"/></svg>' % (width, width - 1, w, fill))
