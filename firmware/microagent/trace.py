# Replaying a trace (spec section 1: JSON Lines of raw events in time order) through an engine,
# with the windows of spec section 2 over the trace's own clock. Runs under MicroPython.
import json

from microagent import events

REQUIRED = {
    "process": ("t", "type", "pid", "ppid", "uid", "commandline"),
    "connection": ("t", "protocol", "local_address", "local_port", "remote_address",
                   "remote_port"),
    "dns": ("t", "hostname", "address"),
    "login": ("t", "operation", "pid", "user_name", "executable"),
}


class TraceError(Exception):
    """A bad trace line; str() is one line naming the file and line number."""


def _integer(event, key, where, low=0, high=0x7FFFFFFF):
    value = event.get(key, 0)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise TraceError("%s: '%s' must be an integer in %d..%d, got %s"
                         % (where, key, low, high, json.dumps(value)))
    return value


def _text(event, key, where, optional=False):
    value = event.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise TraceError("%s: '%s' must be a string, got %s" % (where, key, json.dumps(value)))
    return value


def _choice(event, key, choices, where):
    value = event.get(key)
    if value not in choices:
        raise TraceError("%s: '%s' must be one of %s, got %s"
                         % (where, key, "/".join(choices), json.dumps(value)))
    return choices.index(value)


def _address(event, key, where, scratch):
    value = _text(event, key, where)
    if not events.is_ipv6(value) and not events.parse_ipv4(value, scratch, 0):
        raise TraceError("%s: '%s' is not an IPv4 or IPv6 address: %s"
                         % (where, key, json.dumps(value)))
    return value


def parse_line(line, where):
    """The event dict of one trace line, its kind checked and required keys present."""
    try:
        event = json.loads(line)
    except ValueError:
        raise TraceError("%s: not valid JSON%s" % (where, "" if line.endswith("\n")
                                                    else " (truncated last line?)"))
    if not isinstance(event, dict):
        raise TraceError("%s: a trace line must be a JSON object" % where)
    kind = event.get("kind")
    if kind not in REQUIRED:
        raise TraceError("%s: 'kind' must be one of process/connection/dns/login, got %s"
                         % (where, json.dumps(kind)))
    for key in REQUIRED[kind]:
        if key not in event:
            raise TraceError("%s: %s event lacks '%s'" % (where, kind, key))
    t = event["t"]
    if not isinstance(t, (int, float)) or isinstance(t, bool) or t < 0:
        raise TraceError("%s: 't' must be epoch seconds, got %s" % (where, json.dumps(t)))
    return event


def time_ms(event):
    return int(event["t"] * 1000 + 0.5)


class Replay:
    """Feeds trace lines to ENGINE, closing windows of WINDOW_MS on the trace clock."""

    def __init__(self, engine, window_ms):
        self.engine = engine
        self.window_ms = window_ms
        self.t0 = None
        self.window_start = 0
        self.last_ms = 0
        self._halves = [0, 0]

    def feed(self, line, where):
        """Records one trace line; blank lines are ignored. Raises TraceError."""
        if not line.strip():
            return
        event = parse_line(line, where)
        t = time_ms(event)
        if self.t0 is None:
            self.t0 = t
            self.window_start = t
        elif t < self.last_ms:
            raise TraceError("%s: out of time order (t=%s is before the previous line)"
                             % (where, event["t"]))
        self.last_ms = t
        if t >= self.window_start + self.window_ms:
            self.close_window()
            self.window_start = self.t0 + (t - self.t0) // self.window_ms * self.window_ms
        record_event(self.engine, event, t - self.window_start, where, self._halves)

    def close_window(self):
        """Flushes the current window (an empty one sends nothing)."""
        if self.t0 is None:
            return
        self.engine.flush(self.window_start, self.window_start + self.window_ms)


def record_event(engine, event, offset, where, halves):
    """Records one raw event dict (spec section 1) into ENGINE at OFFSET ms into the window,
    checking each field; HALVES is a scratch list of two. Raises TraceError naming WHERE."""
    kind = event["kind"]
    if kind == "connection":
        protocol = _choice(event, "protocol", events.PROTOCOLS, where)
        local = _address(event, "local_address", where, halves)
        remote = _address(event, "remote_address", where, halves)
        direction = 0
        if event.get("direction") is not None:
            direction = _choice(event, "direction", events.DIRECTIONS, where)
        engine.record_connection(offset, protocol, local,
                                 _integer(event, "local_port", where, 0, 65535), remote,
                                 _integer(event, "remote_port", where, 0, 65535),
                                 _integer(event, "bytes_in", where, 0, 1 << 62),
                                 _integer(event, "bytes_out", where, 0, 1 << 62), direction,
                                 0 if event.get("continued") else 1)
    elif kind == "process":
        engine.record_process(offset, _text(event, "commandline", where),
                              _integer(event, "uid", where, -1),
                              _integer(event, "pid", where),
                              _integer(event, "ppid", where),
                              _choice(event, "type", events.PROCESS_TYPES, where),
                              _text(event, "executable", where, True),
                              _text(event, "user_name", where, True))
    elif kind == "dns":
        engine.record_dns(_text(event, "hostname", where),
                          _address(event, "address", where, halves))
    else:
        remote = event.get("remote_address")
        if remote is not None:
            remote = _address(event, "remote_address", where, halves)
        engine.record_login(offset, _choice(event, "operation", events.LOGIN_OPERATIONS, where),
                            _integer(event, "pid", where), _text(event, "user_name", where),
                            _text(event, "executable", where), remote)


def replay_file(replay, path):
    """Feeds every line of the trace file at PATH; the last window is flushed even on error."""
    number = 0
    try:
        with open(path) as f:
            for line in f:
                number += 1
                replay.feed(line, "%s:%d" % (path, number))
    finally:
        replay.close_window()
