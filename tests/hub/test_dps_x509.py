"""X.509 enrollment groups at the emulator's DPS (hub add-enrollment-group --x509-ca) with paho
clients presenting certificates made here (the firmware core's DPS client has no client
certificate): a certificate signed by the enrolled CA with CN = the registration id registers,
becomes an X.509 hub device of that CA and sends through the hub; a CN other than the
registration id or no certificate gets CONNACK 5, a certificate of another CA fails the TLS
handshake, nothing is registered, and each refusal is counted in hub_events."""
import json
import ssl
import threading

import paho.mqtt.client as mqtt

from dps_helpers import hub_cli
from hub_emulator.database import NO_CLIENT_ID
from test_x509 import connect

TIMEOUT = 20


def register(hub, scope, registration_id, cert=None):
    """Registers through DPS over TLS with the client certificate CERT (files) and no password,
    as DPS documents for X.509 devices: (paho's name of the CONNACK or "refused in TLS", the
    final operation status body or None)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=registration_id,
                         protocol=mqtt.MQTTv311)
    client.username_pw_set("%s/registrations/%s/api-version=2019-03-31" % (scope, registration_id))
    client.tls_set(ca_certs=hub.ca, certfile=cert and cert[0], keyfile=cert and cert[1])
    client.reconnect_delay_set(min_delay=60, max_delay=60)
    done = threading.Event()   # a CONNACK came, or the server ended the TLS session before one
    connack, responses = {}, []
    response = threading.Condition()

    def on_connect(c, userdata, flags, reason_code, properties):
        connack["rc"] = reason_code
        done.set()

    def on_message(c, userdata, message):
        with response:
            responses.append((message.topic, json.loads(message.payload)))
            response.notify_all()

    client.on_connect = on_connect
    client.on_disconnect = lambda *args: done.set()
    client.on_message = on_message
    try:
        client.connect("127.0.0.1", hub.state["dps_port"])
    except (ssl.SSLError, OSError):
        return "refused in TLS", None
    client.loop_start()
    try:
        assert done.wait(TIMEOUT), "no CONNACK and no disconnect"
        if "rc" not in connack:
            return "refused in TLS", None
        if connack["rc"].is_failure:
            return connack["rc"].getName(), None
        client.subscribe("$dps/registrations/res/#", qos=1)

        def ask(topic):
            with response:
                count = len(responses)
                client.publish(topic, json.dumps({"registrationId": registration_id}), qos=1)
                assert response.wait_for(lambda: len(responses) > count, TIMEOUT), "no answer"
                return responses[-1]
        topic, body = ask("$dps/registrations/PUT/iotdps-register/?$rid=1")
        assert topic.startswith("$dps/registrations/res/202/"), (topic, body)
        while body["status"] == "assigning":
            topic, body = ask("$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId="
                              + body["operationId"])
        return connack["rc"].getName(), body
    finally:
        client.disconnect()
        client.loop_stop()


def hub_events(hub):
    return {(device, kind): (count, detail) for device, kind, count, detail in hub.db.execute(
        "SELECT device, kind, count, detail FROM hub_events")}


def test_add_enrollment_group_with_a_ca_prints_the_scope_only(tmp_path, pki):
    data = tmp_path / "hub"
    result = hub_cli("add-enrollment-group", "--data", data, "cameras", "--x509-ca", pki.path("ca-a"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("IdScope=0ne") and ";" not in result.stdout
    again = hub_cli("add-enrollment-group", "--data", data, "cameras")   # a name of an X.509 group
    assert again.returncode == 2 and again.stderr.strip().splitlines() == [
        "microagent: error: enrollment group 'cameras' already exists"]
    key_file = hub_cli("add-enrollment-group", "--data", data, "g2", "--x509-ca", pki.root + "/ca-a.key")
    assert key_file.returncode == 2 and "not a PEM certificate" in key_file.stderr
    missing = hub_cli("add-enrollment-group", "--data", data, "g3", "--x509-ca", tmp_path / "none.pem")
    assert missing.returncode == 2 and len(missing.stderr.splitlines()) == 1
    assert "none.pem" in missing.stderr


def test_certificate_of_the_enrolled_ca_registers_as_an_x509_device_and_sends(x509_hub, pki):
    hub, scope = x509_hub, x509_hub.scope
    cert = pki.device("cam-7", "cam-7")
    status, body = register(hub, scope, "cam-7", cert[:2])
    assert status == "Success"
    state = body["registrationState"]
    assert (body["status"], state["assignedHub"], state["deviceId"]) == ("assigned", "localhost", "cam-7")
    with open(pki.path("ca-a")) as f:
        ca_pem = f.read()
    assert hub.db.execute("SELECT ca_pem, thumbprint FROM x509_devices WHERE id = 'cam-7'").fetchone() \
        == (ca_pem, None)
    assert hub.key("cam-7") is None   # no SAS key: no token is ever valid for it
    # re-registration: the same assignment, still one device
    assert register(hub, scope, "cam-7", cert[:2])[1]["registrationState"]["deviceId"] == "cam-7"
    assert hub.db.execute("SELECT COUNT(*) FROM devices").fetchone()[0] == 1
    assert connect(hub, "cam-7", cert[:2]) == "Success"
    assert [json.loads(m["payload"]) for m in hub.messages("cam-7")] == [{"x509": 1}]
    assert hub_events(hub) == {}


def test_other_certificates_are_refused_counted_and_nothing_registered(x509_hub, pki):
    hub, scope = x509_hub, x509_hub.scope
    wrong_cn = pki.device("wrong-cn", "cam-9")
    other_ca = pki.device("other-ca", "cam-7", ca="ca-b")
    assert register(hub, scope, "cam-7", wrong_cn[:2]) == ("Not authorized", None)
    assert register(hub, scope, "cam-7") == ("Not authorized", None)   # no certificate, no password
    assert register(hub, scope, "cam-7", other_ca[:2]) == ("refused in TLS", None)
    assert hub.db.execute("SELECT COUNT(*) FROM devices").fetchone()[0] == 0
    assert hub.db.execute("SELECT COUNT(*) FROM registrations").fetchone()[0] == 0
    events = hub_events(hub)
    assert events[("cam-7", "dps-registration-refused")][0] == 2
    count, detail = events[(NO_CLIENT_ID, "dps-registration-refused")]
    assert count == 1
    assert detail.startswith("client certificate refused in the TLS handshake (no enrolled CA")
    log = hub.log()
    assert "dps: refused 'cam-7': client certificate CN is not the device id 'cam-7' (CONNACK 5)" in log
    assert "dps: refused 'cam-7': no password and no client certificate (CONNACK 5)" in log
