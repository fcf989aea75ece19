"""Runs in .venv-azure (azure-iot-device 2.14.0): registers through the emulator's DPS with a
symmetric key derived from a group key, or with an X.509 certificate (an X.509 enrollment group),
then sends one message through the assigned hub with the same credential.

argv: PROVISIONING_HOST ID_SCOPE REGISTRATION_ID CA_PEM symmetric-key: the device key comes on stdin
(never on argv); or argv: PROVISIONING_HOST ID_SCOPE REGISTRATION_ID CA_PEM x509 CERT_FILE KEY_FILE.
Prints one JSON line per step, for the test to read.
"""
import json
import sys

from azure.iot.device import IoTHubDeviceClient, Message, ProvisioningDeviceClient, X509

USAGE = "usage: PROVISIONING_HOST ID_SCOPE REGISTRATION_ID CA_PEM (symmetric-key | x509 CERT_FILE KEY_FILE)"


def say(**fields):
    print(json.dumps(fields), flush=True)


def clients(kind, files):
    """The SDK's (provisioning client factory, hub client factory, their credential argument, what
    the message says) for the credential KIND."""
    if kind == "symmetric-key" and not files:
        return (ProvisioningDeviceClient.create_from_symmetric_key,
                IoTHubDeviceClient.create_from_symmetric_key,
                {"symmetric_key": sys.stdin.readline().strip()}, "through dps")
    if kind == "x509" and len(files) == 2:
        return (ProvisioningDeviceClient.create_from_x509_certificate,
                IoTHubDeviceClient.create_from_x509_certificate,
                {"x509": X509(cert_file=files[0], key_file=files[1])}, "with a certificate")
    sys.exit(USAGE)


def main(provisioning_host, id_scope, registration_id, ca_path, kind, *files):
    provisioning_client, hub_client, credential, provisioned = clients(kind, files)
    with open(ca_path) as f:
        ca = f.read()
    provisioning = provisioning_client(provisioning_host=provisioning_host, registration_id=registration_id,
                                       id_scope=id_scope, server_verification_cert=ca, **credential)
    try:
        result = provisioning.register()
    except Exception as exc:
        say(step="register", error=type(exc).__name__)
        return 0
    state = result.registration_state
    say(step="register", error=None, status=result.status, assigned_hub=state.assigned_hub,
        device_id=state.device_id)
    client = hub_client(hostname=state.assigned_hub, device_id=state.device_id, server_verification_cert=ca,
                        connection_retry=False, **credential)
    client.connect()
    client.send_message(Message(json.dumps({"provisioned": provisioned}), content_encoding="utf-8",
                                content_type="application/json"))
    say(step="sent")
    client.shutdown()
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 6:
        sys.exit(USAGE)
    sys.exit(main(*sys.argv[1:]))
