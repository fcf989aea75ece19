"""The emulator's Device Provisioning Service (hub serve --dps-port) against the firmware core's
DPS client (microagent.dps, here on CPython) and raw MQTT requests: group enrollment, derived
keys, assignment to the hub, re-registration, refusals and DPS's status codes."""
import base64
import json
import os

import pytest

from dps_helpers import add_group, derive, dps_settings, hub_cli
from microagent import dps, mqtt
from microagent.sas import unix_time
from paho_device import PahoDevice


def settings_for(hub, scope, key_b64, registration_id):
    return dps.DpsSettings(dps_settings(hub, scope, registration_id, key=key_b64))


def ca_der(hub):
    with open(hub.ca_der, "rb") as f:
        return f.read()


def test_add_enrollment_group_prints_scope_and_a_64_byte_key_once(tmp_path):
    scope, key = add_group(tmp_path, "factory-line-1")
    assert scope.startswith("0ne") and len(scope) == 11
    assert len(base64.b64decode(key)) == 64
    again = hub_cli("add-enrollment-group", "--data", tmp_path, "factory-line-1")
    assert again.returncode == 2 and again.stdout == ""
    assert again.stderr.strip().splitlines() == [
        "microagent: error: enrollment group 'factory-line-1' already exists"]
    assert add_group(tmp_path, "line-2")[0] == scope  # one DPS, one scope
    bad = hub_cli("add-enrollment-group", "--data", tmp_path, "has space")
    assert bad.returncode == 2 and "is not valid" in bad.stderr and len(bad.stderr.splitlines()) == 1


def test_group_member_registers_becomes_a_hub_device_and_keeps_its_assignment(dps_hub):
    hub = dps_hub
    scope, group_key = add_group(hub.data_dir, "sensors")
    device_key = derive(group_key, "sensor-0001")
    settings = settings_for(hub, scope, device_key, "sensor-0001")
    assert mqtt.run(dps.provision(settings, ca_der(hub))) == ("localhost", "sensor-0001")
    assert hub.key("sensor-0001") == device_key
    assert "dps: sensor-0001 assigned to localhost" in hub.log()
    # re-registration: the same assignment, still one device with the same key
    assert mqtt.run(dps.provision(settings, ca_der(hub))) == ("localhost", "sensor-0001")
    assert hub.db.execute("SELECT COUNT(*) FROM devices").fetchone()[0] == 1
    assert hub.key("sensor-0001") == device_key
    # the assigned identity works at the hub with the derived key
    device = PahoDevice(hub, "sensor-0001", password=hub.token("sensor-0001", key=device_key))
    try:
        assert not device.connect().is_failure
        assert device.publish("devices/sensor-0001/messages/events/", b'{"a":1}')
    finally:
        device.close()
    [stored] = hub.messages("sensor-0001")
    assert json.loads(stored["payload"]) == {"a": 1}


def test_key_derived_from_another_groups_key_is_refused_and_nothing_stored(dps_hub, tmp_path):
    hub = dps_hub
    scope, _ = add_group(hub.data_dir, "enrolled")
    stranger = base64.b64encode(os.urandom(64)).decode()
    settings = settings_for(hub, scope, derive(stranger, "intruder-1"), "intruder-1")
    with pytest.raises(dps.DpsRefused) as refused:
        mqtt.run(dps.provision(settings, ca_der(hub)))
    assert "CONNACK code 5" in str(refused.value) and "intruder-1" in str(refused.value)
    assert hub.key("intruder-1") is None
    assert hub.db.execute("SELECT COUNT(*) FROM registrations").fetchone()[0] == 0
    assert "token is not signed with a key of any enrollment group (CONNACK 5)" in hub.log()


def test_a_wrong_id_scope_is_refused(dps_hub):
    hub = dps_hub
    scope, group_key = add_group(hub.data_dir, "g")
    settings = settings_for(hub, "0neFFFFFFFF", derive(group_key, "d1"), "d1")
    with pytest.raises(dps.DpsRefused):
        mqtt.run(dps.provision(settings, ca_der(hub)))
    assert "username names ID scope '0neFFFFFFFF'" in hub.log()


async def _raw_request(hub, scope, key, registration_id, topic, payload):
    """Connects as REGISTRATION_ID with a valid token, sends one request; returns (status, body)."""
    answers = []
    client = mqtt.MQTTClient(registration_id, user=dps.username(scope, registration_id))
    client.on_message = lambda t, p: answers.append((bytes(t).decode(), bytes(p)))
    sock = await mqtt.open_connection("127.0.0.1", hub.state["dps_port"], ca_der(hub),
                                      server_hostname="localhost")
    await client.connect(sock, dps.token(scope, registration_id, base64.b64decode(key),
                                         unix_time() + 600))
    await client.subscribe(dps.RESPONSES + "#")
    await client.publish(topic, payload)
    while not answers:
        await client.poll(5000)
    client.disconnect()
    topic, body = answers[0]
    status, rid, _ = dps.parse_response(topic)
    assert rid == "7"
    return status, json.loads(body)


@pytest.mark.parametrize("payload,status,error_code", [
    (b"not json", 400, 400004),
    (b'{"registrationId": 5}', 400, 400004),
    (b'{"registrationId": "someone-else"}', 401, 401002),
])
def test_bad_requests_get_dps_status_codes(dps_hub, payload, status, error_code):
    hub = dps_hub
    scope, group_key = add_group(hub.data_dir, "g")
    got_status, body = mqtt.run(_raw_request(hub, scope, derive(group_key, "me"), "me",
                                             dps.register_topic(7), payload))
    assert (got_status, body["errorCode"]) == (status, error_code)
    assert set(body) == {"errorCode", "trackingId", "message", "timestampUtc"}
    assert hub.key("me") is None and hub.key("someone-else") is None


def test_status_of_an_unknown_operation_is_404(dps_hub):
    hub = dps_hub
    scope, group_key = add_group(hub.data_dir, "g")
    status, body = mqtt.run(_raw_request(hub, scope, derive(group_key, "me"), "me",
                                         dps.status_topic(7, "4.nothing"), b""))
    assert status == 404 and body["errorCode"] == 404002


def test_settings_never_show_the_key():
    key = base64.b64encode(b"k" * 32).decode()
    settings = dps.DpsSettings("GlobalEndpoint=dps.example:8883;IdScope=0ne1;RegistrationId=r;"
                               "SymmetricKey=" + key)
    assert key not in repr(settings) and key not in str(settings)
    with pytest.raises(dps.DpsError) as missing:
        dps.DpsSettings("GlobalEndpoint=h;IdScope=s;" + key)
    assert key not in str(missing.value) and "unknown field in part 3" in str(missing.value)
