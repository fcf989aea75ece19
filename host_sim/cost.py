"""What a trace costs in IoT Hub meter units per device-day: messages in 4 KB blocks (0.5 KB on
the Free tier) for the JSON and compact encodings, against one message per raw event, and how
many such devices one hub unit carries (the meter: host_sim/metering.py)."""
from microagent.decode import body_of_line
from microagent.encode import COMPACT, JSON
from microagent.trace import TraceError, parse_line, record_event, time_ms

from host_sim.engine import build_host_engine
from host_sim.metering import BLOCK, FREE_BLOCK, blocks, daily_quota
from host_sim.replay import ReplayError, replay_host

# The hubs a device-day is set against: (name in the table, tier).
UNITS = (("Free", "F1"), ("S1", "S1"), ("S2", "S2"), ("S3", "S3"))
_AGENT = "00000000-0000-4000-8000-000000000000"


def _blocks(sizes, block):
    return sum(blocks(size, block) for size in sizes)


def _single_event_sizes(trace):
    """JSON message sizes when each raw event is sent on its own (nothing aggregated); a DNS
    event alone makes no message and is counted as one of 512 bytes (one Free-tier block)."""
    sizes = []
    engine = build_host_engine(1, lambda buffer, length: sizes.append(length), lambda w: None,
                               _AGENT)
    halves = [0, 0]
    first = last = None
    with open(trace) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = "%s:%d" % (trace, number)
            event = parse_line(line, where)
            t = time_ms(event)
            first = t if first is None else first
            last = t
            if event["kind"] == "dns":
                sizes.append(FREE_BLOCK)
                continue
            record_event(engine, event, 0, where, halves)
            engine.flush(t, t)
    return sizes, first, last


def measure(trace, window_ms, cache_size=None, max_message_size=BLOCK):
    """Rows of {sender, messages, bytes, blocks, free_blocks} for the trace as recorded, and
    the factor that scales the trace's span to a day. ReplayError when it cannot be read."""
    try:
        raw, first, last = _single_event_sizes(trace)
    except TraceError as exc:
        raise ReplayError(str(exc))
    except OSError as exc:
        raise ReplayError("cannot read trace %s: %s" % (trace, exc.strerror or exc))
    if not raw:
        raise ReplayError("%s holds no events" % trace)
    span_ms = max(last - first, window_ms)
    per_day = 86400000.0 / span_ms
    rows = [{"sender": "one message per raw event", "messages": len(raw), "bytes": sum(raw),
             "blocks": len(raw), "free_blocks": _blocks(raw, FREE_BLOCK)}]
    for encoding in (JSON, COMPACT):
        sizes = []
        replay_host(trace, window_ms, cache_size,
                    lambda line, sizes=sizes: sizes.append(len(body_of_line(line))), lambda w: None,
                    max_message_size, _AGENT, encoding)
        rows.append({"sender": "%s, windows of %g s" % (encoding, window_ms / 1000.0),
                     "messages": len(sizes), "bytes": sum(sizes),
                     "blocks": _blocks(sizes, BLOCK), "free_blocks": _blocks(sizes, FREE_BLOCK)})
    baseline = rows[0]
    for row in rows:
        for key in ("messages", "bytes", "blocks", "free_blocks"):
            row[key + "_per_day"] = row[key] * per_day
        row["saving"] = baseline["blocks"] / float(row["blocks"]) if row["blocks"] else None
        for unit, tier in UNITS:
            per_day = row["free_blocks_per_day"] if unit == "Free" else row["blocks_per_day"]
            row["devices_per_" + unit] = int(daily_quota(tier) // per_day) if per_day else None
    return rows, per_day
