"""The firmware's hand-written HMAC, base64 and URL encoding agree with CPython's hmac, base64 and
urllib for arbitrary inputs (hypothesis), so tokens minted on a board verify in the cloud."""
import base64
import hashlib
import hmac
import urllib.parse

from hypothesis import given, settings
from hypothesis import strategies as st

from microagent import sas


@settings(max_examples=300)
@given(key=st.binary(max_size=200), message=st.binary(max_size=500))
def test_hmac_matches_stdlib(key, message):
    assert sas.hmac_sha256(key, message) == hmac.new(key, message, hashlib.sha256).digest()


@settings(max_examples=300)
@given(data=st.binary(max_size=300))
def test_base64_matches_stdlib(data):
    assert sas.b64encode(data) == base64.b64encode(data).decode()
    if data:
        assert sas.b64decode(base64.b64encode(data).decode()) == data


@settings(max_examples=300)
@given(text=st.text(max_size=100))
def test_url_encode_matches_stdlib(text):
    assert sas.url_encode(text) == urllib.parse.quote(text, safe="~")


@settings(max_examples=200)
@given(resource=st.text(min_size=1, max_size=80), key=st.binary(min_size=1, max_size=64),
       expiry=st.integers(0, 2**32))
def test_token_matches_reference(resource, key, expiry):
    sr = urllib.parse.quote(resource, safe="")
    sig = base64.b64encode(hmac.new(key, ("%s\n%d" % (sr, expiry)).encode(), hashlib.sha256).digest())
    expected = "SharedAccessSignature sr=%s&sig=%s&se=%d" % (sr, urllib.parse.quote(sig, safe=""), expiry)
    assert sas.sas_token(resource, key, expiry) == expected
