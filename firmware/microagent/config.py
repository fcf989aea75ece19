# Agent configuration: the Defender for IoT micro agent keys (docs/spec.md section 7), so module twins
# written for that agent carry over. MicroPython-compatible.
#
# Values arrive as JSON from the module twin's desired properties. Each key is checked on its
# own: a bad value is rejected with a reason naming the key, and the previous value stays in
# force (the rejection is reported back in the twin's reported properties).

COLLECTORS = ("Process", "NetworkActivity", "Login", "SystemInformation", "Baseline", "SBoM")
FREQUENCIES = ("High", "Medium", "Low")
PRIORITY_INTERVALS = "CollectorsCore_PriorityIntervals"
MESSAGE_TIMEOUT = "IothubModule_MessageTimeout"
# Not a Defender key (its agent only spoke JSON): the wire encoding, "Json" or "Compact".
MESSAGE_ENCODING = "IothubModule_MessageEncoding"
ENCODING_CHOICES = ("Json", "Compact")

_BOOL = 0
_INT = 1
_CHOICE = 2
_TEXT = 3
_INTERVALS = 4

_MAX_INTERVAL_MIN = 10080  # one week
_MAX_TEXT = 1024


def _schema():
    # key -> [kind, default, low, high] (ints), [kind, default, choices] (choice), [kind, default]
    schema = {
        PRIORITY_INTERVALS: [_INTERVALS, "30,120,1440"],
        "Process_CacheSize": [_INT, 256, 1, 65535],
        "NetworkActivity_CacheSize": [_INT, 256, 1, 65535],
        # The firmware's IPv6 cache (the host keeps both families in NetworkActivity_CacheSize's)
        "NetworkActivity_IPv6_CacheSize": [_INT, 64, 1, 65535],
        "Login_CacheSize": [_INT, 256, 1, 65535],
        MESSAGE_TIMEOUT: [_INT, 2880, 1, 43200],
        MESSAGE_ENCODING: [_CHOICE, "Json", ENCODING_CHOICES],
        "Process_Mode": [_CHOICE, "Auto", ("Auto", "Audit", "Netlink", "Polling")],
        "Process_PollingInterval": [_INT, 100000, 1000, 60000000],
        "Baseline_ChecksDisabled": [_TEXT, ""],
        "Baseline_GroupsDisabled": [_TEXT, ""],
    }
    for name in COLLECTORS:
        schema[name + "_Disabled"] = [_BOOL, False]
        frequency = "Low" if name in ("SystemInformation", "Baseline", "SBoM") else "Medium"
        schema[name + "_MessageFrequency"] = [_CHOICE, frequency, FREQUENCIES]
    return schema


def parse_intervals(text):
    """'High,Medium,Low' minutes -> (h, m, l) ints; ValueError with the reason otherwise."""
    if not isinstance(text, str):
        raise ValueError("expected a string \"High,Medium,Low\" of minutes")
    parts = text.split(",")
    if len(parts) != 3:
        raise ValueError("expected three comma-separated minute counts \"High,Medium,Low\"")
    minutes = []
    for part in parts:
        part = part.strip()
        if not part.isdigit():
            raise ValueError("%r is not a whole number of minutes" % part)
        value = int(part)
        if not 1 <= value <= _MAX_INTERVAL_MIN:
            raise ValueError("%d minutes is outside 1..%d" % (value, _MAX_INTERVAL_MIN))
        minutes.append(value)
    # A higher priority never reports less often than a lower one.
    if not minutes[0] <= minutes[1] <= minutes[2]:
        raise ValueError("High <= Medium <= Low must hold")
    return minutes[0], minutes[1], minutes[2]


class Config:
    """Current configuration. DEFAULTS overrides the spec defaults (e.g. from a board profile,
    which may use shorter intervals); MAXIMA lowers the upper bound of integer keys (e.g. cache
    sizes a board's RAM allows). Both are validated like twin values; a bad one raises ValueError.
    """

    def __init__(self, defaults=None, maxima=None):
        self._schema = _schema()
        for key, high in (maxima or {}).items():
            spec = self._spec(key)
            if spec[0] != _INT:
                raise ValueError("config maximum for %s: not an integer key" % key)
            if type(high) is not int or high < spec[2]:
                raise ValueError("config maximum for %s: expected an integer >= %d" % (key, spec[2]))
            spec[3] = min(spec[3], high)
        self._values = {}
        for key in self._schema:
            self._values[key] = self._schema[key][1]
        for key, value in (defaults or {}).items():
            self._spec(key)
            reason = self._check(key, value)
            if reason:
                raise ValueError("config default %s: %s" % (key, reason))
            self._values[key] = value
        self._defaults = dict(self._values)

    def _spec(self, key):
        spec = self._schema.get(key)
        if spec is None:
            raise ValueError("unknown config key %s" % key)
        return spec

    def get(self, key):
        return self._values[key]

    def __getitem__(self, key):
        return self._values[key]

    def keys(self):
        return sorted(self._values)

    def as_dict(self):
        """All keys and their values in force (for reported properties)."""
        return dict(self._values)

    def _check(self, key, value):
        # The reason VALUE is not acceptable for KEY, or None.
        spec = self._schema[key]
        kind = spec[0]
        if kind == _BOOL:
            if type(value) is not bool:
                return "expected true or false"
        elif kind == _INT:
            if type(value) is not int:
                return "expected an integer"
            if not spec[2] <= value <= spec[3]:
                return "%d is outside %d..%d" % (value, spec[2], spec[3])
        elif kind == _CHOICE:
            if value not in spec[2]:
                return "expected one of %s" % ", ".join(spec[2])
        elif kind == _TEXT:
            if not isinstance(value, str):
                return "expected a string"
            if len(value) > _MAX_TEXT:
                return "longer than %d characters" % _MAX_TEXT
        else:
            try:
                parse_intervals(value)
            except ValueError as exc:
                return str(exc)
        return None

    def apply(self, desired):
        """Applies the keys of DESIRED (a twin's desired properties) one by one.

        Keys starting with '$' (twin metadata such as $version) are skipped; null resets a key to
        its default. Returns (applied, rejected): applied maps each key that changed to its new
        value, rejected maps each refused key to the reason, and refused keys keep their value.
        """
        applied = {}
        rejected = {}
        for key in desired:
            if key[:1] == "$":
                continue
            value = desired[key]
            if key not in self._schema:
                rejected[key] = "unknown key"
                continue
            if value is None:
                value = self._defaults[key]
            reason = self._check(key, value)
            if reason:
                rejected[key] = reason
            elif self._values[key] != value or type(self._values[key]) is not type(value):
                self._values[key] = value
                applied[key] = value
        return applied, rejected

    def window_ms(self, collector):
        """Window length of COLLECTOR in ms, from its message frequency and the priority intervals."""
        intervals = parse_intervals(self._values[PRIORITY_INTERVALS])
        frequency = self._values[collector + "_MessageFrequency"]
        return intervals[FREQUENCIES.index(frequency)] * 60000

    def enabled(self, collector):
        return not self._values[collector + "_Disabled"]

    def message_timeout_s(self):
        return self._values[MESSAGE_TIMEOUT] * 60

    def encoding(self):
        """The message encoding in force: "json" or "compact" (microagent.encode's names)."""
        return self._values[MESSAGE_ENCODING].lower()
