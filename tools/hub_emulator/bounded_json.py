"""Reading JSON that a device sent (stored message bodies, twin patches) within fixed bounds.

Anything a device publishes is outside input: a body nested 100,000 deep would make json.loads
recurse until RecursionError, and NaN or Infinity parse in Python but are not JSON. loads()
refuses all of these with BoundsError (a ValueError), so callers handle one exception.
"""
import json
import re

MAX_BYTES = 256 * 1024   # IoT Hub's device-to-cloud message limit
MAX_DEPTH = 64

# Strings (escapes included) and the brackets that nest; only brackets outside strings count.
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


class BoundsError(ValueError):
    """The data is not JSON within the bounds; str() is one line, without the data."""


def _reject_constant(name):
    raise BoundsError("%s is not JSON" % name)


def nesting_depth(data):
    """The deepest nesting of objects and arrays in DATA (bytes), strings skipped."""
    depth = deepest = 0
    for match in _TOKENS.finditer(data):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif token in (b"]", b"}"):
            depth -= 1
    return deepest


def loads(data, max_bytes=MAX_BYTES, max_depth=MAX_DEPTH):
    """The JSON value in DATA (bytes or str); BoundsError when it is not UTF-8 JSON, is longer
    than MAX_BYTES, nests deeper than MAX_DEPTH, uses NaN/Infinity or a lone surrogate."""
    if isinstance(data, str):
        data = data.encode("utf-8", errors="surrogatepass")
    data = bytes(data)
    if len(data) > max_bytes:
        raise BoundsError("%d bytes, more than %d" % (len(data), max_bytes))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BoundsError("not UTF-8") from None
    if nesting_depth(data) > max_depth:
        raise BoundsError("nested deeper than %d levels" % max_depth)
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except BoundsError:
        raise
    except (ValueError, RecursionError) as exc:
        raise BoundsError("not JSON (%s)" % str(exc).split(":")[0]) from None
    try:  # a lone escaped surrogate ("\ud800") parses but is no text: it cannot be printed
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BoundsError("a string holds a lone UTF-16 surrogate") from None
    return value


def dumps(value):
    """VALUE as strict JSON (NaN and Infinity refused) for output other programs read."""
    return json.dumps(value, allow_nan=False)
