"""IoT Hub shared access signatures: verify a device's token against its registry key; mint one.

Token: `SharedAccessSignature sr={urlenc(resource)}&sig={urlenc(b64(HMAC-SHA256(key, sr + "\\n" + se)))}&se={expiry}`
with resource `{hub host}/devices/{device id}` (`.../modules/{module id}` for a module identity).
"""
import base64
import binascii
import hashlib
import hmac
import time
import urllib.parse

PREFIX = "SharedAccessSignature "
MAX_EXPIRY_DIGITS = 12


class TokenRejected(Exception):
    """The token does not grant this identity access; str() is a reason safe to log (no secret),
    .kind the hub event it is (hub_emulator.database.HUB_EVENT_KINDS)."""

    def __init__(self, reason, kind="refused-connect"):
        super().__init__(reason)
        self.kind = kind


def resource_for(hub_host, identity):
    device, _, module = identity.partition("/")
    resource = "%s/devices/%s" % (hub_host, device)
    return resource + "/modules/" + module if module else resource


def signature(key_b64, encoded_resource, expiry):
    key = base64.b64decode(key_b64)
    message = ("%s\n%d" % (encoded_resource, expiry)).encode("utf-8")
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode("ascii")


def make_token(hub_host, identity, key_b64, expiry=None, ttl=3600):
    """A token as the device SDKs mint it (expiry in Unix seconds, default now + ttl)."""
    expiry = int(time.time()) + ttl if expiry is None else int(expiry)
    encoded = urllib.parse.quote(resource_for(hub_host, identity), safe="")
    sig = urllib.parse.quote(signature(key_b64, encoded, expiry), safe="")
    return "%ssr=%s&sig=%s&se=%d" % (PREFIX, encoded, sig, expiry)


def parse_token(password):
    """Splits a token into its fields; None when it is not a SharedAccessSignature at all."""
    if not password.startswith(PREFIX):
        return None
    fields = {}
    for part in password[len(PREFIX):].split("&"):
        name, sep, value = part.partition("=")
        if not sep or name in fields:
            return None
        fields[name] = value
    if not {"sr", "sig", "se"} <= set(fields) or not _is_expiry(fields["se"]):
        return None
    return fields


def _is_expiry(text):
    # ASCII digits only (str.isdigit also takes '²', which int() refuses) and a length no
    # clock reaches: int() of 10,000 digits is refused by Python, 12 digits is year 33658.
    return 0 < len(text) <= MAX_EXPIRY_DIGITS and all("0" <= c <= "9" for c in text)


def verify(fields, hub_host, identity, key_b64, now=None):
    """Raises TokenRejected unless the parsed token is valid for IDENTITY on HUB_HOST now."""
    if "skn" in fields:
        raise TokenRejected("token names a shared access policy; devices authenticate with their own key")
    expiry = int(fields["se"])
    if expiry <= (time.time() if now is None else now):
        raise TokenRejected("token expired", "expired-sas-token")
    raw_resource = fields["sr"]
    resource = urllib.parse.unquote(raw_resource)
    host, _, path = resource.partition("/")
    expected_host, _, expected_path = resource_for(hub_host, identity).partition("/")
    if host.lower() != expected_host.lower() or path.rstrip("/") != expected_path:
        raise TokenRejected("token resource is not %s" % resource_for(hub_host, identity))
    try:
        presented = base64.b64decode(urllib.parse.unquote(fields["sig"]), validate=True)
    except (binascii.Error, ValueError):
        raise TokenRejected("token signature is not base64", "invalid-sas-signature") from None
    # Clients sign the resource exactly as they encoded it in sr=; some leave it unencoded.
    candidates = {raw_resource, urllib.parse.quote(resource, safe="")}
    for encoded in candidates:
        expected = base64.b64decode(signature(key_b64, encoded, expiry))
        if hmac.compare_digest(presented, expected):
            return
    raise TokenRejected("token signature does not match the device key", "invalid-sas-signature")
