# What the agent reads at boot (microagent.settings): the profile, the device file with its
# optional keys, the CA file, and one-line errors naming the file and key that never show the
# connection string. Runs on CPython and MicroPython with real files.
import json
import os

from microagent import settings
from microagent.config import Config
from microagent.profile import ProfileError

HERE = __file__.rsplit("/", 1)[0]
BOARDS = HERE + "/../../boards/"
KEY = "c2VjcmV0LWRldmljZS1rZXktZm9yLXRlc3RzLTAxMjM0NTY3ODk="
CS = "HostName=hub.local;DeviceId=d1;SharedAccessKey=" + KEY


def _files(device, profile_name="unix"):
    base = "/tmp/mp_settings_%d" % (os.urandom(1)[0] << 8 | os.urandom(1)[0])
    with open(BOARDS + profile_name + ".json") as f:
        profile = f.read()
    with open(base + "_board.json", "w") as f:
        f.write(profile)
    with open(base + "_device.json", "w") as f:
        f.write(device if isinstance(device, str) else json.dumps(device))
    return base + "_board.json", base + "_device.json"


def _error(device):
    paths = _files(device)
    try:
        settings.Settings(*paths)
    except ProfileError as exc:
        return str(exc)
    finally:
        for path in paths:
            os.remove(path)
    raise AssertionError("no error for %r" % (device,))


def test_defaults_and_optional_keys():
    paths = _files({"connection_string": CS})
    try:
        s = settings.Settings(*paths)
    finally:
        for path in paths:
            os.remove(path)
    assert (s.port, s.window_ms, s.ca_file) == (8883, 0, None)
    assert s.board["name"] == "unix" and s.connection_string == CS
    config = s.config(Config)
    assert config["NetworkActivity_CacheSize"] == s.board["config"]["NetworkActivity_CacheSize"]
    # The profile's cache size is the most the twin may ask for; 0-size caches stay at default.
    applied, rejected = config.apply({"NetworkActivity_CacheSize": 100000})
    assert not applied and "NetworkActivity_CacheSize" in rejected
    assert config.window_ms("NetworkActivity") == 60000


def test_bad_device_keys_are_named_and_the_key_never_shown():
    message = _error({"connection_string": CS, "port": "8883"})
    assert "key 'port'" in message and KEY not in message and "_device.json" in message
    assert "key 'window_ms'" in _error({"connection_string": CS, "window_ms": -1})
    assert "key 'ca'" in _error({"connection_string": CS, "ca": 5})
    assert "connection_string" in _error({"port": 1})


def test_the_ca_file_is_read_as_der_or_converted_from_pem():
    paths = _files({"connection_string": CS, "ca": "/tmp/mp_settings_ca.pem"})
    try:
        s = settings.Settings(*paths)
        try:
            s.ca_der()
            raise AssertionError("a missing CA file must be an error")
        except ProfileError as exc:
            assert "no CA certificate" in str(exc) and "/tmp/mp_settings_ca.pem" in str(exc)
        with open("/tmp/mp_settings_ca.pem", "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n")
        assert s.ca_der() == b"\x30\x03\x02\x01\x00"
        os.remove("/tmp/mp_settings_ca.pem")
    finally:
        for path in paths:
            os.remove(path)


def test_boot_allocates_the_outbox_from_the_profile():
    paths = _files({"connection_string": CS})
    said = []
    try:
        s, outbox = settings.boot(said.append, *paths)
    finally:
        for path in paths:
            os.remove(path)
    assert said == [] and outbox.max_bytes == s.board["outbox"]["max_bytes"]
    missing, none = settings.boot(said.append, "/nonexistent/board.json", "/nonexistent/device.json")
    assert (missing, none) == (None, None)
    assert said and "the agent is not running" in said[0] and "/nonexistent/board.json" in said[0]
