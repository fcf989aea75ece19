# Replaying a trace (docs/spec.md section 1: JSON Lines of raw events in time order) through an engine,
# with the windows of docs/spec.md section 2 over the trace's own clock. Runs under MicroPython.
import json

from microagent import events

REQUIRED = {
    "process": ("t", "type", "pid", "ppid", "uid", "commandline"),
    "connection": ("t", "protocol", "local_address", "local_port", "remote_address",
                   "remote_port"),
    "dns": ("t", "hostname", "address"),
    "login": ("t", "operation", "pid", "user_name", "executable"),
}

# A recorded command line may be long (Linux allows 2 MiB of arguments; the engine cuts strings
# at 2,048 bytes): the cap only bounds what reading one line can cost, a file without newlines
# included.
MAX_LINE_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 8
_PIECE = 256  # lines are read this many bytes at a time
# Epoch seconds up to the end of unsigned 32-bit time (2106): later is no clock a device has.
MAX_T = 4294967295


class TraceError(Exception):
    """A bad trace line; str() is one line naming the file and line number."""


def _integer(event, key, where, low=0, high=0x7FFFFFFF):
    value = event.get(key, 0)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise TraceError("%s: '%s' must be an integer in %d..%d, got %s"
                         % (where, key, low, high, _shown(value)))
    return value


def _text(event, key, where, optional=False):
    value = event.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise TraceError("%s: '%s' must be a string, got %s" % (where, key, _shown(value)))
    return value


def _choice(event, key, choices, where):
    value = event.get(key)
    if value not in choices:
        raise TraceError("%s: '%s' must be one of %s, got %s"
                         % (where, key, "/".join(choices), _shown(value)))
    return choices.index(value)


def _address(event, key, where, scratch):
    value = _text(event, key, where)
    if (events.canonical_address(value) is None if ":" in value
            else not events.parse_ipv4(value, scratch, 0)):
        raise TraceError("%s: '%s' is not an IPv4 or IPv6 address: %s"
                         % (where, key, _shown(value)))
    return value


def _not_json(name):
    raise ValueError("%s is not JSON" % name)


# CPython's json takes NaN and Infinity, MicroPython's refuses them: both engines must agree.
try:
    json.loads("0", parse_constant=_not_json)

    def _loads(text):
        return json.loads(text, parse_constant=_not_json)
except TypeError:  # MicroPython: no keyword arguments, and no NaN to refuse
    _loads = json.loads


def _shown(value):
    """VALUE as JSON for an error message, cut so one bad line gives one short line."""
    text = json.dumps(value)
    return text if len(text) <= 64 else text[:61] + "..."


def parse_line(line, where):
    """The event dict of one trace line (bytes, or str), its kind checked and required keys
    present. Every way a line can be bad is a TraceError naming WHERE, never another exception."""
    if isinstance(line, str):
        line = line.encode()
    if len(line) > MAX_LINE_BYTES:
        raise TraceError("%s: line longer than %d bytes" % (where, MAX_LINE_BYTES))
    # The checks for unusual lines live in tracecheck, loaded only when a line needs them (a
    # board's heap holds the bytecode of every module imported).
    # MicroPython's json.loads takes heap per level and CPython's recurses. A line with at most
    # MAX_DEPTH brackets cannot nest deeper: only others are scanned.
    if line.count(b"{") + line.count(b"[") > MAX_DEPTH:
        from microagent.tracecheck import deeper_than
        if deeper_than(line, MAX_DEPTH):
            raise TraceError("%s: nested deeper than %d levels" % (where, MAX_DEPTH))
    if line.find(b"\\ud") >= 0 or line.find(b"\\uD") >= 0:
        from microagent.tracecheck import join_surrogates
        try:
            line = join_surrogates(line)
        except ValueError as exc:
            raise TraceError("%s: %s" % (where, exc))
    try:
        text = line.decode()
    except UnicodeError:
        raise TraceError("%s: not valid UTF-8" % where)
    try:
        event = _loads(text)
    except ValueError:
        raise TraceError("%s: not valid JSON%s" % (where, "" if line.endswith(b"\n")
                                                    else " (truncated last line?)"))
    if not isinstance(event, dict):
        raise TraceError("%s: a trace line must be a JSON object" % where)
    kind = event.get("kind")
    if not isinstance(kind, str) or kind not in REQUIRED:
        raise TraceError("%s: 'kind' must be one of process/connection/dns/login, got %s"
                         % (where, _shown(kind)))
    for key in REQUIRED[kind]:
        if key not in event:
            raise TraceError("%s: %s event lacks '%s'" % (where, kind, key))
    t = event["t"]
    # t == t is False for NaN; the bound also keeps infinities and 1e300 out of the clock.
    if not isinstance(t, (int, float)) or isinstance(t, bool) or not t == t or not 0 <= t <= MAX_T:
        raise TraceError("%s: 't' must be epoch seconds in 0..%d, got %s"
                         % (where, MAX_T, _shown(t)))
    return event


def time_ms(event):
    return int(event["t"] * 1000 + 0.5)


class Replay:
    """Feeds trace lines to ENGINE, closing windows of WINDOW_MS on the trace clock."""

    def __init__(self, engine, window_ms):
        self.engine = engine
        self.window_ms = window_ms
        # The trace's clock starts at the first line's time (see started). Imported here: at
        # module level the import cost a board's replay 1 KB of its heap (measured on
        # qemu-cortex-m3, whose 64 KB default it then no longer fitted).
        from microagent.schedule import Schedule
        self.windows = Schedule(0, (window_ms,), None, lambda end, start: end - start)
        self.started = False
        self._halves = [0, 0]

    def feed(self, line, where):
        """Records one trace line; blank lines are ignored. Raises TraceError."""
        if not line.strip():
            return
        event = parse_line(line, where)
        t = time_ms(event)
        windows = self.windows
        if not self.started:
            self.started = True
            windows.now = t
        elif t < windows.now:
            raise TraceError("%s: out of time order (t=%s is before the previous line)"
                             % (where, event["t"]))
        windows.advance(t)
        if windows.due(0):
            self.close_window()
            windows.close(0, self.window_ms)
        record_event(self.engine, event, windows.elapsed[0], where, self._halves)

    def close_window(self):
        """Flushes the current window (an empty one sends nothing)."""
        if not self.started:
            return
        start = self.windows.now - self.windows.elapsed[0]
        self.engine.flush(start, start + self.window_ms)


def record_event(engine, event, offset, where, halves):
    """Records one raw event dict (docs/spec.md section 1) into ENGINE at OFFSET ms into the window,
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


def trace_lines(path):
    """(where, line bytes) for each line of the trace file at PATH, where = "PATH:N". A line
    longer than MAX_LINE_BYTES is a TraceError before it is read whole."""
    number = 0
    with open(path, "rb") as f:
        while True:
            # Read in small pieces: readline(n) allocates n bytes up front, and a board's
            # heap next to full caches has no room for a MAX_LINE_BYTES block per line.
            line = f.readline(_PIECE)
            if not line:
                return
            number += 1
            where = "%s:%d" % (path, number)
            if line[-1:] != b"\n" and len(line) == _PIECE:
                try:
                    from microagent.tracecheck import rest_of_line
                except MemoryError:
                    raise TraceError("%s: out of heap reading this line (raise --heap)" % where)
                line, size = rest_of_line(f, line, _PIECE, MAX_LINE_BYTES)
                if size > MAX_LINE_BYTES:
                    raise TraceError("%s: line longer than %d bytes" % (where, MAX_LINE_BYTES))
                if line is None:
                    raise TraceError("%s: out of heap reading this line (%d bytes or more; "
                                     "raise --heap)" % (where, size))
            yield where, line


def replay_file(replay, path):
    """Feeds every line of the trace file at PATH; the last window is flushed even on error."""
    lines = trace_lines(path)
    line = None
    try:
        for where, line in lines:
            try:
                replay.feed(line, where)
            except MemoryError:
                raise TraceError("%s: out of heap while recording this line (raise --heap or "
                                 "lower --cache-size)" % where)
    except Exception as exc:
        # The bad line and the open file let go of the heap the last window's flush needs.
        line = None
        lines.close()
        try:
            replay.close_window()
        except MemoryError:
            if isinstance(exc, TraceError):
                raise TraceError("%s; the window before it was lost: out of heap (raise --heap)"
                                 % exc)
        raise
    replay.close_window()
