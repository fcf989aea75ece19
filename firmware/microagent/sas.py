# IoT Hub shared-access-signature (SAS) authentication, MicroPython-compatible.
#
# MicroPython has hashlib.sha256 and binascii but no hmac, base64 or urllib, so HMAC (RFC 2104),
# base64 and URL encoding are written here on top of them. The device key and the tokens minted
# from it are secrets: no object here shows them in repr() or str(), and no error message quotes
# them (docs/spec.md section 6; rules: secrets never appear in logs or errors).
import binascii
import hashlib
import time

# Seconds between 1970-01-01 and 2000-01-01: many MicroPython ports count time from 2000, but a
# SAS expiry is Unix time.
EPOCH_2000_OFFSET = 946684800
_EPOCH_OFFSET = EPOCH_2000_OFFSET if time.gmtime(0)[0] == 2000 else 0

_SHA256_BLOCK = 64
_UNRESERVED = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"
_BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def unix_time():
    """Current Unix time in whole seconds, whatever epoch this port's time.time() uses."""
    return int(time.time()) + _EPOCH_OFFSET


def hmac_sha256(key, message):
    """HMAC-SHA256 (RFC 2104) of bytes MESSAGE under bytes KEY; returns the 32-byte digest."""
    if len(key) > _SHA256_BLOCK:
        key = hashlib.sha256(key).digest()
    inner_pad = bytearray(_SHA256_BLOCK)
    outer_pad = bytearray(_SHA256_BLOCK)
    for i in range(_SHA256_BLOCK):
        k = key[i] if i < len(key) else 0
        inner_pad[i] = k ^ 0x36
        outer_pad[i] = k ^ 0x5C
    inner = hashlib.sha256(inner_pad)
    inner.update(message)
    outer = hashlib.sha256(outer_pad)
    outer.update(inner.digest())
    return outer.digest()


def b64encode(data):
    """Standard base64 of bytes DATA, as str, without a trailing newline."""
    return binascii.b2a_base64(data)[:-1].decode()


def b64decode(text):
    """Decodes strict standard base64 (str); raises ValueError without quoting the input.

    binascii on MicroPython skips characters outside the alphabet, so the check is done here.
    """
    raw = text.encode() if isinstance(text, str) else bytes(text)
    body = raw.rstrip(b"=")
    if not raw or len(raw) % 4 or len(raw) - len(body) > 2:
        raise ValueError("not valid base64 (length or padding)")
    for c in body:
        if c not in _BASE64_ALPHABET:
            raise ValueError("not valid base64 (character outside the alphabet)")
    return binascii.a2b_base64(raw)


def url_encode(text):
    """Percent-encodes every byte of TEXT's UTF-8 form except RFC 3986 unreserved characters."""
    out = []
    for c in text.encode():
        if c in _UNRESERVED:
            out.append(chr(c))
        else:
            out.append("%%%02X" % c)
    return "".join(out)


def sas_token(resource, key, expiry):
    """The SAS token for RESOURCE signed with KEY (raw bytes) valid until EXPIRY (Unix seconds).

    SharedAccessSignature sr={urlenc(resource)}&sig={urlenc(b64(HMAC(key, sr + "\\n" + se)))}&se={se}
    """
    sr = url_encode(resource)
    se = str(int(expiry))
    sig = b64encode(hmac_sha256(key, (sr + "\n" + se).encode()))
    return "SharedAccessSignature sr=" + sr + "&sig=" + url_encode(sig) + "&se=" + se


class ConnectionStringError(ValueError):
    """A connection string that cannot be used; the message names the field, never the key."""


_FIELDS = ("HostName", "DeviceId", "SharedAccessKey", "ModuleId", "GatewayHostName", "x509")
_REQUIRED = ("HostName", "DeviceId")
_MAX_ID = 128  # IoT Hub device and module ids are at most 128 characters


def _looks_like_field_name(name):
    if not name or len(name) > 24:
        return False
    for c in name:
        if not ("a" <= c <= "z" or "A" <= c <= "Z"):
            return False
    return True


def _check_host(field, value):
    for c in value:
        if c in " /:@?#;\t\r\n":
            raise ConnectionStringError("connection string: %s contains %r, not a host name"
                                        % (field, c))


def _check_id(field, value):
    if len(value) > _MAX_ID:
        raise ConnectionStringError("connection string: %s is longer than %d characters"
                                    % (field, _MAX_ID))
    for c in value:
        if c in "/ #?\t\r\n" or ord(c) < 32:
            raise ConnectionStringError("connection string: %s contains %r, not allowed in an id"
                                        % (field, c))


class ConnectionString:
    """A parsed device connection string:
    HostName=...;DeviceId=...;SharedAccessKey=...[;ModuleId=...][;GatewayHostName=...], or
    x509=true instead of SharedAccessKey (a client certificate authenticates the device).

    Attributes: host, device_id, module_id (or None), gateway (or None), key (raw bytes, secret;
    None with x509), x509.
    """

    def __init__(self, text):
        if not isinstance(text, str):
            raise ConnectionStringError("connection string: expected text")
        values = {}
        position = 0
        for part in text.strip().split(";"):
            position += 1
            if not part:
                continue
            name, eq, value = part.partition("=")
            name = name.strip()
            if not eq:
                raise ConnectionStringError("connection string: part %d has no '=' (expected Name=value)"
                                            % position)
            if name not in _FIELDS:
                # A key pasted without its name parses as a "name" up to its '=' padding:
                # quote only what looks like a field name.
                shown = repr(name) if _looks_like_field_name(name) else "in part %d" % position
                raise ConnectionStringError("connection string: unknown field %s (known: %s)"
                                            % (shown, ", ".join(_FIELDS)))
            if name in values:
                raise ConnectionStringError("connection string: %s given twice" % name)
            if not value:
                raise ConnectionStringError("connection string: %s is empty" % name)
            values[name] = value
        for name in _REQUIRED:
            if name not in values:
                raise ConnectionStringError("connection string: missing %s" % name)
        # x509=true: the device authenticates with a client certificate, not a key
        self.x509 = values.get("x509", "").lower() == "true"
        if not self.x509 and "SharedAccessKey" not in values:
            raise ConnectionStringError("connection string: missing SharedAccessKey")
        if self.x509 and "SharedAccessKey" in values:
            raise ConnectionStringError("connection string: give SharedAccessKey or x509=true, "
                                        "not both")
        _check_host("HostName", values["HostName"])
        _check_id("DeviceId", values["DeviceId"])
        if "ModuleId" in values:
            _check_id("ModuleId", values["ModuleId"])
        if "GatewayHostName" in values:
            _check_host("GatewayHostName", values["GatewayHostName"])
        key = None
        try:
            if not self.x509:
                key = b64decode(values["SharedAccessKey"])
        except ValueError as exc:
            raise ConnectionStringError("connection string: SharedAccessKey is %s" % exc)
        self.host = values["HostName"]
        self.device_id = values["DeviceId"]
        self.module_id = values.get("ModuleId")
        self.gateway = values.get("GatewayHostName")
        self.key = key

    def client_id(self):
        """MQTT client id: the device id, or device/module for a module identity."""
        if self.module_id:
            return self.device_id + "/" + self.module_id
        return self.device_id

    def resource(self):
        """The SAS resource URI: {host}/devices/{device}[/modules/{module}]."""
        uri = self.host + "/devices/" + self.device_id
        if self.module_id:
            uri += "/modules/" + self.module_id
        return uri

    def connect_host(self):
        """Where to open the connection: the gateway when one is given, else the hub."""
        return self.gateway or self.host

    def __repr__(self):
        return "<ConnectionString HostName=%s DeviceId=%s ModuleId=%s GatewayHostName=%s SharedAccessKey=***>" % (
            self.host, self.device_id, self.module_id, self.gateway)

    __str__ = __repr__


class SasTokenSource:
    """Mints SAS tokens for one resource and renews them RENEW_BEFORE_S seconds before expiry.

    KEY is the raw device key (bytes). CLOCK returns Unix seconds (default unix_time), so tests
    and ports with a 2000 epoch get the same result.
    """

    def __init__(self, resource, key, ttl_s=3600, renew_before_s=300, clock=unix_time):
        if ttl_s <= renew_before_s:
            raise ValueError("SAS ttl_s (%d) must exceed renew_before_s (%d)" % (ttl_s, renew_before_s))
        self.resource = resource
        self._key = key
        self.ttl_s = ttl_s
        self.renew_before_s = renew_before_s
        self._clock = clock
        self._token = None
        self.expiry = 0
        self.renew_at = 0   # the one renewal rule: renew_before_s before expiry (the session's too)

    def due(self, now=None):
        """True when the current token is missing or within renew_before_s of its expiry."""
        if now is None:
            now = self._clock()
        return self._token is None or now >= self.renew_at

    def token(self, now=None):
        """The current token, minting a new one first when due()."""
        if now is None:
            now = self._clock()
        if self.due(now):
            self.expiry = now + self.ttl_s
            self.renew_at = self.expiry - self.renew_before_s
            self._token = sas_token(self.resource, self._key, self.expiry)
        return self._token

    def __repr__(self):
        return "<SasTokenSource sr=%s expiry=%d token=***>" % (self.resource, self.expiry)

    __str__ = __repr__
