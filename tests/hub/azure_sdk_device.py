"""Runs in .venv-azure (azure-iot-device 2.14.0, paho-mqtt 1.x): acts as a device against the emulator.

argv: CONNECTION_STRING CA_PEM MODE. MODE "session": connect, send a security message, use the
twin, wait for one desired patch; "connect-only": report how a connection attempt ends.
Prints one JSON line per step, for the test to read.
"""
import json
import queue
import sys

from azure.iot.device import IoTHubDeviceClient, Message


def say(**fields):
    print(json.dumps(fields), flush=True)


def main(connection_string, ca_path, mode):
    with open(ca_path) as f:
        ca = f.read()
    client = IoTHubDeviceClient.create_from_connection_string(connection_string, server_verification_cert=ca,
                                                              connection_retry=False, keep_alive=30)
    patches = queue.Queue()
    try:
        client.connect()
    except Exception as exc:
        say(step="connect", error=type(exc).__name__)
        return 0
    say(step="connect", error=None)
    if mode == "session":
        client.on_twin_desired_properties_patch_received = patches.put
        message = Message(json.dumps({"Events": [{"Name": "SystemInformation"}]}), content_encoding="utf-8",
                          content_type="application/json")
        message.set_as_security_message()
        message.custom_properties["origin"] = "azure sdk"
        message.message_id = "mid-1"
        client.send_message(message)
        say(step="sent")
        client.patch_twin_reported_properties({"sdk": "azure-iot-device", "nested": {"a": 1}})
        say(step="twin", twin=client.get_twin())
        say(step="ready")
        say(step="desired", patch=patches.get(timeout=30))
    client.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
