"""Runs in .venv-azure (azure-iot-device 2.14.0): registers through the emulator's DPS with an X.509
certificate (an X.509 enrollment group), then sends one message through the assigned hub with the
same certificate.

argv: PROVISIONING_HOST ID_SCOPE REGISTRATION_ID CA_PEM CERT_FILE KEY_FILE. Prints one JSON line per
step, for the test to read.
"""
import json
import sys

from azure.iot.device import IoTHubDeviceClient, Message, ProvisioningDeviceClient, X509


def say(**fields):
    print(json.dumps(fields), flush=True)


def main(provisioning_host, id_scope, registration_id, ca_path, cert_file, key_file):
    with open(ca_path) as f:
        ca = f.read()
    x509 = X509(cert_file=cert_file, key_file=key_file)
    provisioning = ProvisioningDeviceClient.create_from_x509_certificate(
        provisioning_host=provisioning_host, registration_id=registration_id, id_scope=id_scope,
        x509=x509, server_verification_cert=ca)
    try:
        result = provisioning.register()
    except Exception as exc:
        say(step="register", error=type(exc).__name__)
        return 0
    state = result.registration_state
    say(step="register", error=None, status=result.status, assigned_hub=state.assigned_hub,
        device_id=state.device_id)
    client = IoTHubDeviceClient.create_from_x509_certificate(
        x509=x509, hostname=state.assigned_hub, device_id=state.device_id,
        server_verification_cert=ca, connection_retry=False)
    client.connect()
    client.send_message(Message(json.dumps({"provisioned": "with a certificate"}),
                                content_encoding="utf-8", content_type="application/json"))
    say(step="sent")
    client.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:7]))
