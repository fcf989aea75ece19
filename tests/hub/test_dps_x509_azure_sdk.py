"""Interop: Microsoft's device SDK (azure-iot-device in .venv-azure) registers through the
emulator's DPS with an X.509 certificate of an enrolled CA (an X.509 enrollment group), then
sends through the assigned hub with the same certificate; a certificate of another CA is refused.

As in test_dps_azure_sdk.py, the SDK's fixed port 8883 puts the test in a network namespace of its
own: the hub on 127.0.0.1:8883 (named localhost, as the assignment says), the DPS on [::1]:8883.
"""
import json

import pytest

from dps_helpers import add_x509_group, run_sdk


@pytest.fixture
def x509_hub_8883(dps_hub_8883, pki):
    """dps_hub_8883 with an X.509 enrollment group of CA A: its IdScope in .scope."""
    dps_hub_8883.scope = add_x509_group(dps_hub_8883.data_dir, "sdk-cameras", pki.path("ca-a"))
    return dps_hub_8883


def test_sdk_registers_with_a_certificate_and_sends_through_the_assigned_hub(azure_python, x509_hub_8883, pki):
    hub = x509_hub_8883
    steps = run_sdk(azure_python, hub, hub.scope, "sdk-cam-7", cert=pki.device("sdk-cam-7", "sdk-cam-7"))
    assert steps == [{"step": "register", "error": None, "status": "assigned",
                      "assigned_hub": "localhost", "device_id": "sdk-cam-7"},
                     {"step": "sent"}], hub.log()
    [stored] = hub.messages("sdk-cam-7")
    assert json.loads(stored["payload"]) == {"provisioned": "with a certificate"}
    assert hub.key("sdk-cam-7") is None   # an X.509 device: no SAS key


def test_sdk_with_a_certificate_of_another_ca_is_refused(azure_python, x509_hub_8883, pki):
    hub = x509_hub_8883
    # refused in the TLS handshake (a CA no group enrolled): the SDK cannot connect
    steps = run_sdk(azure_python, hub, hub.scope, "sdk-rogue",
                    cert=pki.device("sdk-rogue", "sdk-rogue", ca="ca-b"))
    assert len(steps) == 1 and steps[0]["step"] == "register" and steps[0]["error"] == "ConnectionFailedError", steps
    assert hub.messages() == []
    assert hub.db.execute("SELECT COUNT(*) FROM registrations").fetchone()[0] == 0
