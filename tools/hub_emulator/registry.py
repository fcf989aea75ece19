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


def add_x509_device(db, identity, ca_pem=None, thumbprint=None):
    """Registers IDENTITY authenticated by a client certificate signed by CA_PEM (a PEM text)
    or whose SHA-1 or SHA-256 THUMBPRINT (hex) is given; it has no SAS key."""
    if not IDENTITY.match(identity) or "/" in identity:
        raise RegistryError("device id %r is not a valid IoT Hub device id" % identity)
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
    if db.execute("INSERT OR IGNORE INTO devices VALUES (?, '', ?)", (identity, created)).rowcount == 0:
        raise RegistryError("device %r is already registered" % identity)
    db.execute("INSERT OR REPLACE INTO x509_devices VALUES (?, ?, ?)",
               (identity, ca_pem, thumbprint.lower() if thumbprint else None))


def is_registered(db, identity):
    return db.execute("SELECT 1 FROM devices WHERE id = ?", (identity,)).fetchone() is not None


def x509_credential(db, identity):
    """(CA PEM or None, thumbprint or None) of an X.509 device, or None for any other."""
    row = db.execute("SELECT ca_pem, thumbprint FROM x509_devices WHERE id = ?", (identity,)).fetchone()
    return tuple(row) if row else None


def x509_cas(db):
    """Every CA (PEM) an X.509 device's certificate may be signed by."""
    return {row[0] for row in db.execute("SELECT DISTINCT ca_pem FROM x509_devices WHERE ca_pem IS NOT NULL")}


def device_key(db, identity):
    """The identity's primary key (base64), or None when it is not registered or has none
    (an X.509 device: no SAS token is ever valid for it)."""
    row = db.execute("SELECT primary_key FROM devices WHERE id = ?", (identity,)).fetchone()
    return row[0] if row and row[0] else None


def x509_connection_string(db, identity, gateway="127.0.0.1"):
    return "HostName=%s;DeviceId=%s;x509=true;GatewayHostName=%s" % (hub_name(db), identity, gateway)


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
