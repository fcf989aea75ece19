"""DPS provisioning for the agent on Linux: the firmware core's DPS client (microagent.dps, on
CPython) and the assignment cache, a 0600 file beside the outbox (in a 0700 folder), so a
restart connects to its hub without registering again. The cache holds what DPS answered, never
the key. An X.509 device (CertFile/KeyFile in its settings) registers and then connects to its hub
with the same certificate."""
import os

from microagent import dps, mqtt
from microagent.mqtt import pem_to_der

CACHE_NAME = "dps-assignment.json"


class ProvisioningError(Exception):
    """Provisioning failed; str() is one line without a secret."""


def settings_of(text):
    try:
        return dps.DpsSettings(text)
    except dps.DpsError as exc:
        raise ProvisioningError("$MICROAGENT_DPS: %s" % exc) from None


def client_cert(settings):
    """(certificate file, key file) of an X.509 device's settings, absolute; None for a symmetric
    key. ProvisioningError when one is missing."""
    if settings.cert_file is None:
        return None
    files = (os.path.abspath(settings.cert_file), os.path.abspath(settings.key_file))
    for field, path in zip(("CertFile", "KeyFile"), files):
        if not os.path.isfile(path):
            raise ProvisioningError("$MICROAGENT_DPS: %s %s: no such file" % (field, path))
    return files


def cache_path(outbox_path):
    return os.path.join(os.path.dirname(os.path.abspath(outbox_path)), CACHE_NAME)


def read_cache(path, settings):
    """(hub, device id) cached at PATH for SETTINGS, or None."""
    try:
        with open(path) as f:
            return dps.cached(settings, f.read())
    except OSError:
        return None


def write_cache(path, text):
    """Writes the assignment cache atomically, mode 0600 from its creation, in a folder only
    its owner can enter (tightened to 0700 when it is ours and open to others, unless it is a
    shared sticky folder such as /tmp, where the file's own mode still keeps it private)."""
    folder = os.path.dirname(path)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    status = os.stat(folder)
    if status.st_mode & 0o077 and status.st_uid == os.getuid() and not status.st_mode & 0o1000:
        os.chmod(folder, 0o700)
    temporary = path + ".tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(temporary, path)


def connection_string(dps_text, ca_file, cache, log):
    """The hub connection string of this device: from the cached assignment, else registered
    through DPS now (and cached). ProvisioningError (one line) when DPS refuses or fails."""
    settings = settings_of(dps_text)
    assigned = read_cache(cache, settings)
    if assigned is None:
        with open(ca_file, "rb") as f:
            ca = f.read()
        try:
            assigned = mqtt.run(dps.provision(settings, pem_to_der(ca) if b"-----BEGIN" in ca else ca,
                                              log=log, client_cert=client_cert(settings)))
        except (dps.DpsError, mqtt.MQTTError, mqtt.TLSError, OSError) as exc:
            raise ProvisioningError(str(exc)) from None
        write_cache(cache, dps.cache_text(settings, *assigned))
        log("DPS assigned %s to hub %s as %s" % (settings.registration_id, *assigned))
    return dps.connection_string(settings, *assigned)
