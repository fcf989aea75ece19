"""Device/module twins: desired and reported properties with their versions, in SQLite.

A patch is a JSON merge patch (RFC 7396) as IoT Hub applies it: objects merge, null deletes.
Desired patches are also queued (desired_patches) for the running server to push to the device.

Limits are IoT Hub's, from "Understand and use device twins in IoT Hub"
(https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-device-twins, "Tags and properties
format" and "Device twin size"): objects nest at most 10 levels, keys are at most 1 KB of UTF-8,
string values at most 4 KB, and the whole desired section and the whole reported section at most
32 KB each as IoT Hub counts it (section_size). IoT Hub "rejects with an error all operations that
would increase the size ... above the limit": a patch is checked against the section it makes,
not alone, so a device cannot grow its twin one patch at a time. (The emulator keeps no tags, the
third section, limited to 8 KB at IoT Hub.)
"""
import json

from hub_emulator import bounded_json
from hub_emulator.database import transaction

FIRST_VERSION = 1
# A patch's JSON text: IoT Hub counts a section without JSON's quotes, colons and commas, so a
# legal 32 KB section of short keys and values takes several times that as text.
MAX_TWIN_PATCH_BYTES = 128 * 1024
MAX_SECTION_SIZE = 32 * 1024       # desired, and reported, after the patch (section_size)
MAX_TWIN_DEPTH = 10
MAX_KEY_BYTES = 1024
MAX_STRING_BYTES = 4 * 1024
# How IoT Hub counts a number and a boolean in a section's size.
NUMBER_SIZE = 8
BOOLEAN_SIZE = 4

# Twin response statuses: IoT Hub answers 204 to an applied reported patch; a patch it refuses is
# 400 when malformed, and 413 (Request Entity Too Large) when the section it would make is over
# the size limit (the docs say only "rejected with an error"; 413 tells the device which).
STATUS_MALFORMED = 400
STATUS_TOO_LARGE = 413


class TwinError(ValueError):
    """A patch that is not a JSON object (or not JSON within bounded_json's limits)."""

    status = STATUS_MALFORMED


class TwinTooLarge(TwinError):
    """A patch that would make its section larger than MAX_SECTION_SIZE; nothing was stored."""

    status = STATUS_TOO_LARGE


def _row(db, device):
    row = db.execute("SELECT desired, desired_version, reported, reported_version FROM twins WHERE device = ?",
                     (device,)).fetchone()
    if row is None:
        return {}, FIRST_VERSION, {}, FIRST_VERSION
    return json.loads(row[0]), row[1], json.loads(row[2]), row[3]


def merge(target, patch):
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        elif isinstance(value, dict):
            target[key] = merge({}, value)
        else:
            target[key] = value
    return target


def document(db, device):
    """The twin as a GET returns it: {"desired": {..., "$version": N}, "reported": {..., "$version": M}}."""
    desired, desired_version, reported, reported_version = _row(db, device)
    return {"desired": dict(desired, **{"$version": desired_version}),
            "reported": dict(reported, **{"$version": reported_version})}


def parse_patch(payload):
    """The patch object in a device's PATCH body; TwinError when it is not bounded JSON."""
    try:
        return _check(bounded_json.loads(payload, max_bytes=MAX_TWIN_PATCH_BYTES,
                                         max_depth=MAX_TWIN_DEPTH))
    except bounded_json.BoundsError as exc:
        raise TwinError("patch: %s" % exc) from None


def _check(patch):
    if not isinstance(patch, dict):
        raise TwinError("a twin patch must be a JSON object")
    # IoT Hub reserves `$`-prefixed names (e.g. $version) for itself.
    patch = {key: value for key, value in patch.items() if not key.startswith("$")}
    _check_members(patch, 1)
    return patch


def _check_members(value, depth):
    if depth > MAX_TWIN_DEPTH:
        raise TwinError("nested deeper than %d levels" % MAX_TWIN_DEPTH)
    if isinstance(value, dict):
        for key, member in value.items():
            if len(key.encode("utf-8", errors="surrogatepass")) > MAX_KEY_BYTES:
                raise TwinError("a key of more than %d bytes" % MAX_KEY_BYTES)
            _check_members(member, depth + 1)
    elif isinstance(value, list):
        for member in value:
            _check_members(member, depth + 1)
    elif isinstance(value, str) and len(value.encode("utf-8", errors="surrogatepass")) > MAX_STRING_BYTES:
        raise TwinError("a string value of more than %d bytes" % MAX_STRING_BYTES)


def section_size(value):
    """A section's size as IoT Hub counts it: each key's UTF-8 length plus its value's, a string
    by its UTF-8 length, a number 8, a boolean 4, an object or array by what it holds."""
    if isinstance(value, dict):
        return sum(len(key.encode("utf-8", errors="surrogatepass")) + section_size(member)
                   for key, member in value.items())
    if isinstance(value, list):
        return sum(section_size(member) for member in value)
    if isinstance(value, str):
        return len(value.encode("utf-8", errors="surrogatepass"))
    if isinstance(value, bool):
        return BOOLEAN_SIZE
    return NUMBER_SIZE if value is not None else 0


def _bounded(section, name):
    size = section_size(section)
    if size > MAX_SECTION_SIZE:
        raise TwinTooLarge("the %s section would be %d bytes, over IoT Hub's %d"
                           % (name, size, MAX_SECTION_SIZE))
    return section


def _save(db, device, desired, desired_version, reported, reported_version):
    db.execute("INSERT OR REPLACE INTO twins VALUES (?, ?, ?, ?, ?)",
               (device, json.dumps(desired), desired_version, json.dumps(reported), reported_version))


def patch_reported(db, device, patch):
    """Applies a reported-properties patch; returns the new reported $version. TwinTooLarge, and
    nothing stored, when the reported section it makes is over MAX_SECTION_SIZE."""
    patch = _check(patch)
    with transaction(db):
        desired, desired_version, reported, reported_version = _row(db, device)
        reported = _bounded(merge(reported, patch), "reported")
        _save(db, device, desired, desired_version, reported, reported_version + 1)
    return reported_version + 1


def patch_desired(db, device, patch):
    """Applies a desired-properties patch and queues it for the server; returns the new $version.
    TwinTooLarge, and nothing stored, when the desired section it makes is over MAX_SECTION_SIZE."""
    patch = _check(patch)
    with transaction(db):
        desired, desired_version, reported, reported_version = _row(db, device)
        version = desired_version + 1
        _save(db, device, _bounded(merge(desired, patch), "desired"), version, reported, reported_version)
        db.execute("INSERT INTO desired_patches (device, version, patch) VALUES (?, ?, ?)",
                   (device, version, json.dumps(patch)))
    return version


def last_queued_patch(db):
    return db.execute("SELECT COALESCE(MAX(id), 0) FROM desired_patches").fetchone()[0]


def queued_patches(db, after):
    """Desired patches queued after row id AFTER: [(row id, device, version, patch dict)]."""
    rows = db.execute("SELECT id, device, version, patch FROM desired_patches WHERE id > ? ORDER BY id", (after,))
    return [(row[0], row[1], row[2], json.loads(row[3])) for row in rows]
