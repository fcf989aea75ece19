"""Conformance with Microsoft's azure-iot-device SDK 2.14.0, in its own venv (it pins paho-mqtt < 2).

The SDK always connects to port 8883, so the emulator and the SDK device run in a network
namespace of the test's own, where 127.0.0.1:8883 is free whatever the machine runs.
"""
import json
import os
import subprocess

import pytest

from hub_emulator.process import HubProcess

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AZURE_PYTHON = os.path.join(REPO, ".venv-azure", "bin", "python")
SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "azure_sdk_device.py")
SDK_VERSION = "2.14.0"


@pytest.fixture(scope="session")
def azure_python():
    """.venv-azure's python, made by `make setup` (tools/azure-sdk-requirements.txt)."""
    probe = [AZURE_PYTHON, "-c", "import importlib.metadata as m; print(m.version('azure-iot-device'))"]
    found = subprocess.run(probe, capture_output=True, text=True) if os.path.exists(AZURE_PYTHON) else None
    if found is None or found.stdout.strip() != SDK_VERSION:
        pytest.fail("azure-iot-device %s is not in .venv-azure: run `make setup`" % SDK_VERSION, pytrace=False)
    return AZURE_PYTHON


@pytest.fixture
def hub_8883(tmp_path, private_network):
    process = HubProcess(tmp_path / "hub", port=8883, plain_port=None)
    with process:
        yield process


def steps(proc):
    """Yields the script's JSON lines as they come."""
    for line in proc.stdout:
        yield json.loads(line)


def test_sdk_session_security_message_twin_and_desired_push(azure_python, hub_8883):
    hub = hub_8883
    connection_string = hub.add_device("sdk-device")
    proc = subprocess.Popen([azure_python, SCRIPT, connection_string, hub.ca, "session"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen = {}
        for step in steps(proc):
            seen[step["step"]] = step
            if step["step"] == "connect":
                assert step["error"] is None, hub.log()
            if step["step"] == "ready":
                hub.set_desired("sdk-device", {"NetworkActivity_CacheSize": 512})
            if step["step"] == "desired":
                break
        assert proc.wait(timeout=30) == 0, proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
    assert "desired" in seen, proc.stderr.read()
    assert seen["desired"]["patch"] == {"NetworkActivity_CacheSize": 512, "$version": 2}
    assert seen["twin"]["twin"] == {"desired": {"$version": 1},
                                   "reported": {"sdk": "azure-iot-device", "nested": {"a": 1}, "$version": 2}}
    [stored] = hub.messages("sdk-device")
    assert stored["properties"] == {"$.mid": "mid-1", "$.ct": "application/json", "$.ce": "utf-8",
                                    "$.ifid": "urn:azureiot:Security:SecurityAgent:1", "origin": "azure sdk"}
    assert json.loads(stored["payload"]) == {"Events": [{"Name": "SystemInformation"}]}
    assert "sdk-device connected" in hub.log()


def test_sdk_with_wrong_key_gets_credential_error(azure_python, hub_8883):
    hub = hub_8883
    connection_string = hub.add_device("sdk-device")
    hub.add_device("other")
    wrong = connection_string.replace(hub.key("sdk-device"), hub.key("other"))
    result = subprocess.run([azure_python, SCRIPT, wrong, hub.ca, "connect-only"], capture_output=True,
                            text=True, timeout=60)
    assert json.loads(result.stdout.splitlines()[0]) == {"step": "connect", "error": "CredentialError"}, result.stderr
    assert "token signature does not match the device key (CONNACK 5)" in hub.log()
