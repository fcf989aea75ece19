"""Interop: Microsoft's device SDK (azure-iot-device in .venv-azure) registers through the
emulator's DPS with a key derived from a group key, then sends through the assigned hub.

The SDK connects to port 8883 for both, so the test runs in a network namespace of its own with
the hub on 127.0.0.1:8883 (named localhost, as its assignment says) and the DPS on [::1]:8883.
"""
import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys

import pytest

from hub_emulator.process import HubProcess
from test_azure_sdk import AZURE_PYTHON, SDK_VERSION

MICROAGENT = os.path.join(os.path.dirname(sys.executable), "microagent")
SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "azure_sdk_dps_device.py")


@pytest.fixture(scope="module")
def azure_python():
    """.venv-azure's python, made by `make setup` (as in test_azure_sdk.py)."""
    probe = [AZURE_PYTHON, "-c", "import importlib.metadata as m; print(m.version('azure-iot-device'))"]
    found = subprocess.run(probe, capture_output=True, text=True) if os.path.exists(AZURE_PYTHON) else None
    if found is None or found.stdout.strip() != SDK_VERSION:
        pytest.fail("azure-iot-device %s is not in .venv-azure: run `make setup`" % SDK_VERSION, pytrace=False)
    return AZURE_PYTHON


@pytest.fixture
def hub_and_dps_8883(tmp_path, private_network):
    process = HubProcess(tmp_path / "hub", port=8883, plain_port=None,
                         extra_args=["--dps-port", "8883", "--dps-host", "::1"])
    process.db.execute("UPDATE settings SET value = 'localhost' WHERE name = 'hub_name'")
    with process:
        yield process


def group(hub, name):
    result = subprocess.run([MICROAGENT, "hub", "add-enrollment-group", "--data", hub.data_dir, name],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return dict(p.split("=", 1) for p in result.stdout.strip().split(";"))


def derive(group_key, registration_id):
    return base64.b64encode(hmac.new(base64.b64decode(group_key), registration_id.encode(),
                                     hashlib.sha256).digest()).decode()


def run_sdk(python, hub, scope, registration_id, key):
    result = subprocess.run([python, SCRIPT, "::1", scope, registration_id, hub.ca], input=key + "\n",
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_sdk_registers_through_our_dps_and_sends_through_the_assigned_hub(azure_python, hub_and_dps_8883):
    hub = hub_and_dps_8883
    enrollment = group(hub, "sdk-fleet")
    key = derive(enrollment["SymmetricKey"], "sdk-board-7")
    steps = run_sdk(azure_python, hub, enrollment["IdScope"], "sdk-board-7", key)
    assert steps == [{"step": "register", "error": None, "status": "assigned",
                      "assigned_hub": "localhost", "device_id": "sdk-board-7"},
                     {"step": "sent"}], hub.log()
    [stored] = hub.messages("sdk-board-7")
    assert json.loads(stored["payload"]) == {"provisioned": "through dps"}
    assert hub.key("sdk-board-7") == key


def test_sdk_with_a_key_of_no_group_is_refused(azure_python, hub_and_dps_8883):
    hub = hub_and_dps_8883
    enrollment = group(hub, "sdk-fleet")
    key = derive(base64.b64encode(os.urandom(64)).decode(), "sdk-rogue")
    steps = run_sdk(azure_python, hub, enrollment["IdScope"], "sdk-rogue", key)
    assert steps == [{"step": "register", "error": "CredentialError"}], hub.log()
    assert hub.key("sdk-rogue") is None and hub.messages() == []
