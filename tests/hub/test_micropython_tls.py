"""The real MicroPython unix port (mbedTLS, 64 KB heap) verifies the emulator's certificate and talks to it."""
import os

import pytest

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mp_tls_device.py")


@pytest.mark.parametrize("server_hostname", ["127.0.0.1", "localhost"])
def test_micropython_device_over_tls(hub, micropython, server_hostname):
    result = micropython(SCRIPT, [hub.port, hub.ca_der, hub.username("dev1"), hub.token("dev1"), server_hostname])
    assert result.stdout.split("\n")[:2] == ["connack b' \\x02\\x00\\x00'", "puback b'@\\x02\\x00\\x07'"]
    [stored] = hub.messages("dev1")
    assert stored["properties"] == {"$.ct": "application/json"} and stored["payload"] == b'{"mp":1}'


def test_micropython_refuses_a_hub_name_the_certificate_does_not_carry(hub, micropython):
    result = micropython(SCRIPT, [hub.port, hub.ca_der, hub.username("dev1"), hub.token("dev1"), "wrong.example"],
                         check=False)
    assert result.returncode != 0 and "does not match" in result.stdout + result.stderr
    assert hub.messages() == []
