"""Device/module twins: desired and reported properties with their versions, in SQLite.

A patch is a JSON merge patch (RFC 7396) as IoT Hub applies it: objects merge, null deletes.
Desired patches are also queued (desired_patches) for the running server to push to the device.
"""
import json

from hub_emulator import bounded_json
from hub_emulator.database import transaction

FIRST_VERSION = 1
# IoT Hub: a twin section is at most 32 KB and its JSON nests at most 10 levels deep.
MAX_TWIN_PATCH_BYTES = 32 * 1024
MAX_TWIN_DEPTH = 10


class TwinError(ValueError):
    """A patch that is not a JSON object (or not JSON within bounded_json's limits)."""


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
    return {key: value for key, value in patch.items() if not key.startswith("$")}


def _save(db, device, desired, desired_version, reported, reported_version):
    db.execute("INSERT OR REPLACE INTO twins VALUES (?, ?, ?, ?, ?)",
               (device, json.dumps(desired), desired_version, json.dumps(reported), reported_version))


def patch_reported(db, device, patch):
    """Applies a reported-properties patch; returns the new reported $version."""
    patch = _check(patch)
    with transaction(db):
        desired, desired_version, reported, reported_version = _row(db, device)
        _save(db, device, desired, desired_version, merge(reported, patch), reported_version + 1)
    return reported_version + 1


def patch_desired(db, device, patch):
    """Applies a desired-properties patch and queues it for the server; returns the new $version."""
    patch = _check(patch)
    with transaction(db):
        desired, desired_version, reported, reported_version = _row(db, device)
        version = desired_version + 1
        _save(db, device, merge(desired, patch), version, reported, reported_version)
        db.execute("INSERT INTO desired_patches (device, version, patch) VALUES (?, ?, ?)",
                   (device, version, json.dumps(patch)))
    return version


def last_queued_patch(db):
    return db.execute("SELECT COALESCE(MAX(id), 0) FROM desired_patches").fetchone()[0]


def queued_patches(db, after):
    """Desired patches queued after row id AFTER: [(row id, device, version, patch dict)]."""
    rows = db.execute("SELECT id, device, version, patch FROM desired_patches WHERE id > ? ORDER BY id", (after,))
    return [(row[0], row[1], row[2], json.loads(row[3])) for row in rows]
