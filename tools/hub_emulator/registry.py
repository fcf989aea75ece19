"""The device registry: identities (a device id, or `device/module`) and their primary keys."""
import base64
import datetime
import os
import re

from hub_emulator.database import hub_name

# IoT Hub device ids: up to 128 of these characters (module ids likewise), case-sensitive.
_ID = r"[A-Za-z0-9\-.%_*?!(),:=@$']{1,128}"
IDENTITY = re.compile(r"^%s(/%s)?$" % (_ID, _ID))


class RegistryError(Exception):
    """A registry request that cannot be done; the message names the identity."""


def add_device(db, identity, key=None):
    """Registers IDENTITY with KEY (base64; default a fresh 32-byte key); returns the key."""
    if not IDENTITY.match(identity):
        raise RegistryError("device id %r is not a valid IoT Hub id (1-128 of A-Z a-z 0-9 -.%%_*?!(),:=@$', "
                            "optionally /MODULE)" % identity)
    key = key or base64.b64encode(os.urandom(32)).decode("ascii")
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
    cursor = db.execute("INSERT OR IGNORE INTO devices VALUES (?, ?, ?)", (identity, key, created))
    if cursor.rowcount == 0:
        raise RegistryError("device %r is already registered" % identity)
    return key


def device_key(db, identity):
    """The identity's primary key (base64), or None when it is not registered."""
    row = db.execute("SELECT primary_key FROM devices WHERE id = ?", (identity,)).fetchone()
    return row[0] if row else None


def connection_string(db, identity, gateway="127.0.0.1"):
    key = device_key(db, identity)
    if key is None:
        raise RegistryError("device %r is not registered" % identity)
    device, _, module = identity.partition("/")
    parts = ["HostName=" + hub_name(db), "DeviceId=" + device]
    if module:
        parts.append("ModuleId=" + module)
    parts += ["SharedAccessKey=" + key, "GatewayHostName=" + gateway]
    return ";".join(parts)
