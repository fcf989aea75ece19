# The files tools/flash.py writes next to main.py, and the line it waits for.
# The board has no jsonschema: this module checks what the agent relies on (required keys, their
# types, and the rules that tie keys together), with one-line errors naming the file and the key.
# The host also validates against boards/schema.json; docs/boards.md documents every field.
import json

from microagent.config import parse_intervals

PROFILE_FILE = "microagent_board.json"
CREDENTIALS_FILE = "microagent_device.json"
# The agent prints this (at the start of a line) once it runs; flash.py waits for it.
STARTED_LINE = "microagent: started"

# Collectors whose cache size is a config key; listing one of them needs a non-empty cache.
CACHED_COLLECTORS = ("Process", "NetworkActivity", "Login")
MAX_CACHE_SIZE = 4096

_TYPE_NAMES = ((bool, "boolean"), (int, "integer"), (str, "string"), (list, "array"), (dict, "object"))

# (dotted key, type): every key the agent reads from a profile.
_REQUIRED = (
    ("name", str), ("description", str), ("port", str), ("platform", str),
    ("runs_agent", bool), ("hashlib", bool),
    ("heap_bytes", int), ("heap_budget_bytes", int), ("max_message_bytes", int),
    ("outbox", dict), ("outbox.max_messages", int), ("outbox.max_bytes", int),
    ("collectors", list), ("uplink", str), ("can_reset", bool), ("fs_root", str),
    ("config", dict), ("config.CollectorsCore_PriorityIntervals", str),
    ("config.Process_CacheSize", int), ("config.NetworkActivity_CacheSize", int),
    ("config.Login_CacheSize", int),
)
_UPLINKS = ("wifi", "ethernet", "serial", "none")


class ProfileError(ValueError):
    pass


def _type_name(value):
    if value is None:
        return "null"
    for kind, name in _TYPE_NAMES:  # bool first: True is also an int
        if isinstance(value, kind):
            return name
    return "other"


def _is(value, kind):
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _lookup(data, dotted):
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return False, None
        data = data[part]
    return True, data


def _fail(source, key, problem):
    raise ProfileError("%s: key '%s': %s" % (source, key, problem))


def _expect(source, key, value, kind):
    if not _is(value, kind):
        for k, name in _TYPE_NAMES:
            if k is kind:
                _fail(source, key, "expected %s, got %s" % (name, _type_name(value)))


def _check_mpy(source, mpy):
    if mpy is None:
        return
    _expect(source, "mpy", mpy, dict)
    for key in ("version", "sub_version"):
        found, value = _lookup(mpy, key)
        if not found:
            _fail(source, "mpy." + key, "missing")
        _expect(source, "mpy." + key, value, int)
    if "arch" not in mpy:
        _fail(source, "mpy.arch", "missing")
    if mpy["arch"] is not None:
        _expect(source, "mpy.arch", mpy["arch"], str)


def check(data, source):
    """Raises ProfileError naming SOURCE and the key when DATA is not a usable profile."""
    if not isinstance(data, dict):
        raise ProfileError("%s: expected a JSON object, got %s" % (source, _type_name(data)))
    for key, kind in _REQUIRED:
        found, value = _lookup(data, key)
        if not found:
            _fail(source, key, "missing")
        _expect(source, key, value, kind)
    if "mpy" not in data:
        _fail(source, "mpy", "missing")
    _check_mpy(source, data["mpy"])
    for key in ("heap_bytes", "heap_budget_bytes", "max_message_bytes", "outbox.max_messages",
                "outbox.max_bytes"):
        if _lookup(data, key)[1] < 0:
            _fail(source, key, "must not be negative")
    if data["heap_budget_bytes"] > data["heap_bytes"]:
        _fail(source, "heap_budget_bytes", "%d exceeds heap_bytes %d"
              % (data["heap_budget_bytes"], data["heap_bytes"]))
    if data["max_message_bytes"] > data["outbox"]["max_bytes"]:
        _fail(source, "max_message_bytes", "%d exceeds outbox.max_bytes %d"
              % (data["max_message_bytes"], data["outbox"]["max_bytes"]))
    if data["uplink"] not in _UPLINKS:
        _fail(source, "uplink", "'%s' is not one of %s" % (data["uplink"], ", ".join(_UPLINKS)))
    config = data["config"]
    try:
        parse_intervals(config["CollectorsCore_PriorityIntervals"])
    except ValueError as exc:
        _fail(source, "config.CollectorsCore_PriorityIntervals", str(exc))
    size6 = config.get("NetworkActivity_IPv6_CacheSize", 0)  # optional: 0, no IPv6 cache
    if type(size6) is not int or size6 < 0 or size6 > MAX_CACHE_SIZE:
        _fail(source, "config.NetworkActivity_IPv6_CacheSize", "%s is not an integer in 0..%d"
              % (size6, MAX_CACHE_SIZE))
    for name in CACHED_COLLECTORS:
        key = name + "_CacheSize"
        size = config[key]
        if size < 0 or size > MAX_CACHE_SIZE:
            _fail(source, "config." + key, "%d is outside 0..%d" % (size, MAX_CACHE_SIZE))
        if size == 0 and name in data["collectors"]:
            _fail(source, "config." + key, "must be at least 1 because collectors lists " + name)


def _read_json(path):
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        raise ProfileError("%s: cannot read the file (flash the board with tools/flash.py)" % path)
    try:
        return json.loads(text)
    except ValueError:
        raise ProfileError("%s: not valid JSON" % path)


def load_profile(path=PROFILE_FILE):
    """The board profile at PATH as a dict, checked; ProfileError names the file and key."""
    data = _read_json(path)
    check(data, path)
    return data


def load_credentials(path=CREDENTIALS_FILE):
    """The device connection string at PATH. Errors never include the value (it holds the key)."""
    data = _read_json(path)
    if not isinstance(data, dict):
        raise ProfileError("%s: expected a JSON object, got %s" % (path, _type_name(data)))
    if "connection_string" not in data:
        _fail(path, "connection_string", "missing")
    value = data["connection_string"]
    if not isinstance(value, str) or not value:
        _fail(path, "connection_string", "expected a non-empty string")
    return value
