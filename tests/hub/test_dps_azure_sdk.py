"""Interop: Microsoft's device SDK (azure-iot-device in .venv-azure) registers through the
emulator's DPS with a key derived from a group key, then sends through the assigned hub.

The SDK connects to port 8883 for both, so the test runs in a network namespace of its own with
the hub on 127.0.0.1:8883 (named localhost, as its assignment says) and the DPS on [::1]:8883
(conftest.py's dps_hub_8883).
"""
import base64
import json
import os

from dps_helpers import add_group, derive, run_sdk


def test_sdk_registers_through_our_dps_and_sends_through_the_assigned_hub(azure_python, dps_hub_8883):
    hub = dps_hub_8883
    scope, group_key = add_group(hub.data_dir, "sdk-fleet")
    key = derive(group_key, "sdk-board-7")
    steps = run_sdk(azure_python, hub, scope, "sdk-board-7", key=key)
    assert steps == [{"step": "register", "error": None, "status": "assigned",
                      "assigned_hub": "localhost", "device_id": "sdk-board-7"},
                     {"step": "sent"}], hub.log()
    [stored] = hub.messages("sdk-board-7")
    assert json.loads(stored["payload"]) == {"provisioned": "through dps"}
    assert hub.key("sdk-board-7") == key


def test_sdk_with_a_key_of_no_group_is_refused(azure_python, dps_hub_8883):
    hub = dps_hub_8883
    scope, _ = add_group(hub.data_dir, "sdk-fleet")
    key = derive(base64.b64encode(os.urandom(64)).decode(), "sdk-rogue")
    steps = run_sdk(azure_python, hub, scope, "sdk-rogue", key=key)
    assert steps == [{"step": "register", "error": "CredentialError"}], hub.log()
    assert hub.key("sdk-rogue") is None and hub.messages() == []
