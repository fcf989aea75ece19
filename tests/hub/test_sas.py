"""SAS token verification, checked against tokens minted independently of hub_emulator.sas."""
import base64
import hashlib
import hmac
import time
import urllib.parse

import pytest

from hub_emulator import sas

KEY = base64.b64encode(bytes(range(32))).decode()
OTHER_KEY = base64.b64encode(bytes(32)).decode()
HOST = "myhub.azure-devices.net"


def mint(resource, key=KEY, expiry=None, encode=True):
    """A token built by hand, the way docs/spec.md section 6 writes it. Valid for a day: the
    parametrized tokens are minted at collection, and a slow run reaches them many minutes later."""
    expiry = expiry or int(time.time()) + 86400
    sr = urllib.parse.quote(resource, safe="") if encode else resource
    digest = hmac.new(base64.b64decode(key), ("%s\n%d" % (sr, expiry)).encode(), hashlib.sha256).digest()
    sig = urllib.parse.quote(base64.b64encode(digest).decode(), safe="")
    return "SharedAccessSignature sr=%s&sig=%s&se=%d" % (sr, sig, expiry)


def check(token, identity="dev1", key=KEY):
    fields = sas.parse_token(token)
    assert fields is not None
    sas.verify(fields, HOST, identity, key)


def test_make_token_matches_the_spec_formula():
    expiry = int(time.time()) + 600
    assert sas.make_token(HOST, "dev1", KEY, expiry=expiry) == mint(HOST + "/devices/dev1", expiry=expiry)


@pytest.mark.parametrize("resource,encode", [
    (HOST + "/devices/dev1", True), (HOST + "/devices/dev1", False), ("MyHub.Azure-Devices.NET/devices/dev1", True)])
def test_valid_tokens_are_accepted(resource, encode):
    check(mint(resource, encode=encode))


def test_module_identity_resource():
    check(mint(HOST + "/devices/dev1/modules/DefenderIotMicroAgent"), identity="dev1/DefenderIotMicroAgent")
    with pytest.raises(sas.TokenRejected, match="resource"):
        check(mint(HOST + "/devices/dev1"), identity="dev1/DefenderIotMicroAgent")


@pytest.mark.parametrize("token,reason", [
    (mint(HOST + "/devices/dev1", key=OTHER_KEY), "signature does not match"),
    (mint(HOST + "/devices/dev1", expiry=int(time.time()) - 5), "expired"),
    (mint(HOST + "/devices/dev2"), "resource"),
    (mint("otherhub.azure-devices.net/devices/dev1"), "resource"),
    (mint(HOST + "/devices/DEV1"), "resource"),  # device ids are case-sensitive
    (mint(HOST + "/devices/dev1") + "&skn=iothubowner", "policy"),
    (mint(HOST + "/devices/dev1").replace("sig=", "sig=%25%25"), "not base64"),
])
def test_invalid_tokens_are_rejected_with_a_reason_that_holds_no_secret(token, reason):
    with pytest.raises(sas.TokenRejected, match=reason) as caught:
        check(token)
    assert sas.parse_token(token)["sig"] not in str(caught.value)


@pytest.mark.parametrize("password", [
    "sr=a&sig=b&se=1", "SharedAccessSignature sr=a&sig=b", "SharedAccessSignature sr=a&sig=b&se=soon",
    "SharedAccessSignature sr=a&sig=b&se=1&se=2", "SharedAccessSignature sr=a&sig&se=1"])
def test_malformed_tokens_do_not_parse(password):
    assert sas.parse_token(password) is None
