# SAS authentication (microagent.sas) on CPython and MicroPython: RFC 4231 HMAC vectors, base64,
# URL encoding, token format, renewal, connection strings, and that secrets stay hidden.
from microagent import sas
from mp_assert import raises

KEY_B64 = "c2VjcmV0LWRldmljZS1rZXktZm9yLXRlc3RzLTAxMjM0NTY3ODk="
CS = "HostName=myhub.azure-devices.net;DeviceId=dev-01;SharedAccessKey=" + KEY_B64

# RFC 4231 test cases with full-length HMAC-SHA-256 output (case 5 truncates, so it is left out).
RFC4231 = (
    (b"\x0b" * 20, b"Hi There",
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"Jefe", b"what do ya want for nothing?",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    (b"\xaa" * 20, b"\xdd" * 50,
     "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    (bytes(range(1, 26)), b"\xcd" * 50,
     "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
    (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    (b"\xaa" * 131, b"This is a test using a larger than block-size key and a larger than block-size"
     b" data. The key needs to be hashed before being used by the HMAC algorithm.",
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
)


def _hex(data):
    return "".join("%02x" % b for b in data)




def test_hmac_rfc4231_vectors():
    for number, (key, data, expected) in enumerate(RFC4231):
        assert _hex(sas.hmac_sha256(key, data)) == expected, "RFC 4231 case %d" % (number + 1)


def test_hmac_key_exactly_one_block():
    # A 64-byte key is used as is, a 65-byte key is hashed first: the two must differ.
    assert sas.hmac_sha256(b"k" * 64, b"m") != sas.hmac_sha256(b"k" * 65, b"m")
    assert len(sas.hmac_sha256(b"", b"")) == 32


def test_base64_round_trip_and_strictness():
    for data in (b"", b"a", b"ab", b"abc", bytes(range(256))):
        if data:
            assert sas.b64decode(sas.b64encode(data)) == data
    assert sas.b64encode(b"abc") == "YWJj"
    for bad in ("YWJ", "YW!j", "Y===", "", "YWJj\n"):
        raises(ValueError, sas.b64decode, bad)


def test_url_encode_keeps_only_unreserved():
    assert sas.url_encode("a b/\u00fc~*") == "a%20b%2F%C3%BC~%2A"
    assert sas.url_encode("Az09-_.~") == "Az09-_.~"
    assert sas.url_encode("+/=&") == "%2B%2F%3D%26"


def test_sas_token_exact():
    token = sas.sas_token("myhub.azure-devices.net/devices/dev-01", sas.b64decode(KEY_B64), 1800000000)
    assert token == ("SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdev-01"
                     "&sig=9eOJNkKAfxgt9pKftccgvHfGBN2P%2FMgbex8eu3%2FGkbM%3D&se=1800000000")


def test_token_source_renews_before_expiry():
    now = [1000]
    source = sas.SasTokenSource("h/devices/d", b"key", ttl_s=3600, renew_before_s=300,
                                clock=lambda: now[0])
    first = source.token()
    assert source.expiry == 4600 and first.endswith("&se=4600")
    now[0] = 4299
    assert not source.due() and source.token() is first
    now[0] = 4300
    assert source.due()
    second = source.token()
    assert second != first and second.endswith("&se=7900") and source.expiry == 7900
    raises(ValueError, sas.SasTokenSource, "r", b"k", 60, 60)


def test_unix_time_is_unix_epoch():
    # 2020-01-01 in Unix seconds: any port, whatever its epoch, must be past it.
    assert sas.unix_time() > 1577836800


def test_connection_string_fields():
    cs = sas.ConnectionString(CS)
    assert (cs.host, cs.device_id, cs.module_id, cs.gateway) == (
        "myhub.azure-devices.net", "dev-01", None, None)
    assert cs.key == b"secret-device-key-for-tests-0123456789"
    assert cs.client_id() == "dev-01"
    assert cs.resource() == "myhub.azure-devices.net/devices/dev-01"
    assert cs.connect_host() == "myhub.azure-devices.net"
    module = sas.ConnectionString(CS + ";ModuleId=DefenderIotMicroAgent;GatewayHostName=127.0.0.1;")
    assert module.client_id() == "dev-01/DefenderIotMicroAgent"
    assert module.resource() == "myhub.azure-devices.net/devices/dev-01/modules/DefenderIotMicroAgent"
    assert module.connect_host() == "127.0.0.1"


def test_connection_string_errors_name_the_field_never_the_key():
    cases = (
        ("HostName=h;SharedAccessKey=" + KEY_B64, "missing DeviceId"),
        ("DeviceId=d;SharedAccessKey=" + KEY_B64, "missing HostName"),
        ("HostName=h;DeviceId=d", "missing SharedAccessKey"),
        ("HostName=h;DeviceId=d;SharedAccessKey=" + KEY_B64[:-2], "SharedAccessKey is not valid base64"),
        ("HostName=h;DeviceId=d;SharedAccessKey=" + KEY_B64[:-1] + "!", "SharedAccessKey is not valid base64"),
        ("HostName=h;DeviceId=d;SharedAccesKey=" + KEY_B64, "unknown field 'SharedAccesKey'"),
        ("HostName=h;DeviceId=;SharedAccessKey=" + KEY_B64, "DeviceId is empty"),
        ("HostName=h;DeviceId=d;DeviceId=e;SharedAccessKey=" + KEY_B64, "DeviceId given twice"),
        ("HostName=h h;DeviceId=d;SharedAccessKey=" + KEY_B64, "HostName contains"),
        ("HostName=h;DeviceId=a/b;SharedAccessKey=" + KEY_B64, "DeviceId contains"),
        ("HostName=h;DeviceId=d;" + KEY_B64, "unknown field in part 3"),
        ("HostName=h;DeviceId=d;" + KEY_B64.rstrip("="), "part 3 has no '='"),
    )
    for text, expected in cases:
        message = str(raises(sas.ConnectionStringError, sas.ConnectionString, text))
        assert expected in message, (expected, message)
        assert KEY_B64[:20] not in message, message


def test_repr_hides_key_and_token():
    cs = sas.ConnectionString(CS)
    for text in (repr(cs), str(cs)):
        assert KEY_B64[:12] not in text and "secret-device" not in text and "***" in text
    source = sas.SasTokenSource(cs.resource(), cs.key, clock=lambda: 1000)
    token = source.token()
    signature = token.split("sig=")[1].split("&")[0]
    assert signature not in repr(source) and signature not in str(source)
    assert "myhub.azure-devices.net/devices/dev-01" in repr(source)
