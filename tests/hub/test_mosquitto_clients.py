"""Conformance with Debian's mosquitto-clients (mosquitto_pub / mosquitto_sub, libmosquitto)."""
import json
import shutil
import subprocess
import sys
import time

import pytest

if not shutil.which("mosquitto_pub"):
    pytest.fail("mosquitto_pub is missing: `make setup` installs mosquitto-clients", pytrace=False)


def mosquitto(tool, hub, identity="dev1", tls=True, password=None, timeout=20, args=()):
    command = [tool, "-h", "127.0.0.1", "-V", "mqttv311", "-i", identity, "-u", hub.username(identity),
               "-P", password or hub.token(identity)]
    command += ["-p", str(hub.port), "--cafile", hub.ca] if tls else ["-p", str(hub.plain_port)]
    return subprocess.run(command + list(args), capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "plain"])
def test_mosquitto_pub_security_message_is_stored(hub, tls):
    body = json.dumps({"Events": [{"Name": "Login", "Payload": [{"operation": "Login"}]}]})
    topic = "devices/dev1/messages/events/%24.ifid=urn%3Aazureiot%3ASecurity%3ASecurityAgent%3A1&%24.ct=application%2Fjson"
    result = mosquitto("mosquitto_pub", hub, tls=tls, args=["-q", "1", "-t", topic, "-m", body])
    assert result.returncode == 0, result.stderr
    [stored] = hub.messages("dev1")
    assert stored["properties"] == {"$.ifid": "urn:azureiot:Security:SecurityAgent:1", "$.ct": "application/json"}
    assert json.loads(stored["payload"]) == json.loads(body)


def test_mosquitto_pub_wrong_key_is_not_authorised(hub):
    hub.add_device("dev2")
    result = mosquitto("mosquitto_pub", hub, password=hub.token("dev1", key=hub.key("dev2")),
                       args=["-q", "1", "-t", "devices/dev1/messages/events/", "-m", "x"])
    assert result.returncode != 0
    assert "not authori" in result.stderr.lower()
    assert hub.messages() == []


def test_mosquitto_pub_qos2_is_disconnected(hub):
    result = mosquitto("mosquitto_pub", hub, args=["-q", "2", "-t", "devices/dev1/messages/events/", "-m", "x"])
    assert result.returncode != 0
    assert hub.messages() == []
    assert "QoS 2" in hub.log()


def test_mosquitto_sub_receives_desired_patch_and_twin_response(hub):
    subscriber = subprocess.Popen(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(hub.port), "--cafile", hub.ca, "-V", "mqttv311",
         "-i", "dev1", "-u", hub.username("dev1"), "-P", hub.token("dev1"), "-q", "1", "-v",
         "-t", "$iothub/twin/PATCH/properties/desired/#", "-t", "devices/dev2/messages/devicebound/#",
         "-C", "1", "-W", "20"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while "dev1 subscribed" not in hub.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "devices/dev2/messages/devicebound/# (refused)" in hub.log()
        subprocess.run([sys.executable, "-m", "hub_emulator", "set-desired", "--data", hub.data_dir, "dev1",
                        "Baseline_Disabled=true"], check=True, capture_output=True, timeout=30)
        out, err = subscriber.communicate(timeout=20)
    finally:
        subscriber.kill()
        subscriber.wait()
    assert subscriber.returncode == 0, err
    topic, _, body = out.strip().partition(" ")
    assert topic == "$iothub/twin/PATCH/properties/desired/?$version=2"
    assert json.loads(body) == {"Baseline_Disabled": True, "$version": 2}
