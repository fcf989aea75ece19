"""IoT Hub MQTT topics for one identity: what it may publish and subscribe to, property bags."""
import urllib.parse

TWIN_GET = "$iothub/twin/GET/"
TWIN_REPORTED = "$iothub/twin/PATCH/properties/reported/"
TWIN_RESPONSES = "$iothub/twin/res/"
TWIN_DESIRED = "$iothub/twin/PATCH/properties/desired/"
METHOD_RESPONSES = "$iothub/methods/res/"


def base(identity):
    device, _, module = identity.partition("/")
    return "devices/%s/modules/%s" % (device, module) if module else "devices/" + device


def telemetry_prefix(identity):
    return base(identity) + "/messages/events/"


def allowed_filters(identity):
    """Topic filters IoT Hub lets this identity subscribe to."""
    device, _, module = identity.partition("/")
    filters = {TWIN_RESPONSES + "#", TWIN_DESIRED + "#", "$iothub/methods/POST/#"}
    filters.add(base(identity) + "/inputs/#" if module else base(identity) + "/messages/devicebound/#")
    return filters


def parse_property_bag(bag):
    """`a=1&%24.ct=application%2Fjson` -> {"a": "1", "$.ct": "application/json"}; a bare key maps to None."""
    properties = {}
    for pair in bag.split("&"):
        if not pair:
            continue
        key, sep, value = pair.partition("=")
        # unquote, not unquote_plus: the SDKs encode spaces as %20 and a '+' is a literal '+'
        properties[urllib.parse.unquote(key)] = urllib.parse.unquote(value) if sep else None
    return properties


def twin_request(topic):
    """"GET" or "PATCH" for a twin request topic (`$iothub/twin/GET/?$rid=N`,
    `$iothub/twin/PATCH/properties/reported/?$rid=N`), else None: the path must match exactly,
    as IoT Hub's does (`.../reported/anything` is no twin topic)."""
    path, _, _ = topic.partition("?")
    if path == TWIN_GET:
        return "GET"
    if path == TWIN_REPORTED:
        return "PATCH"
    return None


def request_id(topic):
    """The `$rid` of a twin request topic (`...?$rid=N`), or None."""
    _, _, query = topic.partition("?")
    return parse_property_bag(query).get("$rid")


def matches(topic_filter, topic):
    """MQTT topic filter matching with `+` and `#`."""
    filter_levels = topic_filter.split("/")
    levels = topic.split("/")
    for i, part in enumerate(filter_levels):
        if part == "#":
            return True
        if i >= len(levels) or (part != "+" and part != levels[i]):
            return False
    return len(levels) == len(filter_levels)
