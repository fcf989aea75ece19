"""Interop: Microsoft's device SDK (azure-iot-device in .venv-azure) registers through the
emulator's DPS with an X.509 certificate of an enrolled CA (an X.509 enrollment group), then
sends through the assigned hub with the same certificate; a certificate of another CA is refused.

As in test_dps_azure_sdk.py, the SDK's fixed port 8883 puts the test in a network namespace of its
own: the hub on 127.0.0.1:8883 (named localhost, as the assignment says), the DPS on [::1]:8883.
"""
import json
import os
import subprocess
import sys

import pytest

from hub_emulator.process import HubProcess
from test_dps_azure_sdk import azure_python  # noqa: F401 (a fixture)
from test_x509 import Pki

MICROAGENT = os.path.join(os.path.dirname(sys.executable), "microagent")
SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "azure_sdk_dps_x509_device.py")


@pytest.fixture
def pki(tmp_path):
    folder = tmp_path / "pki"
    folder.mkdir()
    return Pki(str(folder))


@pytest.fixture
def x509_hub_8883(tmp_path, private_network, pki):
    process = HubProcess(tmp_path / "hub", port=8883, plain_port=None,
                         extra_args=["--dps-port", "8883", "--dps-host", "::1"])
    process.db.execute("UPDATE settings SET value = 'localhost' WHERE name = 'hub_name'")
    with process:
        result = subprocess.run([MICROAGENT, "hub", "add-enrollment-group", "--data", process.data_dir,
                                 "sdk-cameras", "--x509-ca", pki.path("ca-a")],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        process.scope = result.stdout.strip().partition("=")[2]
        yield process


def run_sdk(python, hub, registration_id, cert):
    result = subprocess.run([python, SCRIPT, "::1", hub.scope, registration_id, hub.ca, cert[0], cert[1]],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_sdk_registers_with_a_certificate_and_sends_through_the_assigned_hub(azure_python,  # noqa: F811
                                                                          x509_hub_8883, pki):
    hub = x509_hub_8883
    steps = run_sdk(azure_python, hub, "sdk-cam-7", pki.device("sdk-cam-7", "sdk-cam-7"))
    assert steps == [{"step": "register", "error": None, "status": "assigned",
                      "assigned_hub": "localhost", "device_id": "sdk-cam-7"},
                     {"step": "sent"}], hub.log()
    [stored] = hub.messages("sdk-cam-7")
    assert json.loads(stored["payload"]) == {"provisioned": "with a certificate"}
    assert hub.key("sdk-cam-7") is None   # an X.509 device: no SAS key


def test_sdk_with_a_certificate_of_another_ca_is_refused(azure_python, x509_hub_8883, pki):  # noqa: F811
    hub = x509_hub_8883
    # refused in the TLS handshake (a CA no group enrolled): the SDK cannot connect
    steps = run_sdk(azure_python, hub, "sdk-rogue", pki.device("sdk-rogue", "sdk-rogue", ca="ca-b"))
    assert len(steps) == 1 and steps[0]["step"] == "register" and steps[0]["error"] == "ConnectionFailedError", steps
    assert hub.messages() == []
    assert hub.db.execute("SELECT COUNT(*) FROM registrations").fetchone()[0] == 0
