"""Conformance with paho-mqtt 2.x (the host agent's client), over TLS and plain TCP."""
import json
import queue
import subprocess
import sys
import time

import pytest

from paho_device import PahoDevice
from polling import wait_for

SECURITY_BAG = ("%24.ifid=urn%3Aazureiot%3ASecurity%3ASecurityAgent%3A1"
                "&%24.ct=application%2Fjson&%24.ce=utf-8")


@pytest.fixture
def devices():
    opened = []

    def open_device(hub, identity="dev1", **options):
        device = PahoDevice(hub, identity, **options)
        opened.append(device)
        return device
    yield open_device
    for device in opened:
        device.close()


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "plain"])
def test_security_message_is_stored_with_its_properties(hub, devices, tls):
    device = devices(hub, tls=tls)
    assert not device.connect().is_failure
    body = {"AgentId": "a", "Events": [{"Name": "ProcessCreate", "Payload": [{"hit_count": 2}]}]}
    assert device.publish("devices/dev1/messages/events/" + SECURITY_BAG, json.dumps(body).encode(), qos=1)
    assert device.publish("devices/dev1/messages/events/", b"plain text, QoS 0", qos=0)
    wait_for(lambda: len(hub.messages()) >= 2, 5)
    first, second = hub.messages("dev1")
    assert first["properties"] == {"$.ifid": "urn:azureiot:Security:SecurityAgent:1",
                                   "$.ct": "application/json", "$.ce": "utf-8"}
    assert json.loads(first["payload"]) == body
    assert second["properties"] == {} and second["payload"] == b"plain text, QoS 0"


def test_puback_means_stored(hub, devices):
    device = devices(hub)
    device.connect()
    for i in range(50):
        assert device.publish("devices/dev1/messages/events/n=%d" % i, b"%d" % i, qos=1)
        # the PUBACK arrived, so the row must already be committed
        assert hub.messages("dev1")[-1]["properties"] == {"n": str(i)}


@pytest.mark.parametrize("case", ["wrong key", "expired token", "unregistered device", "wrong client id",
                                  "wrong resource", "wrong hub name", "policy token"])
def test_bad_credentials_are_refused_not_authorized(hub, devices, case):
    hub.add_device("dev2")
    options = {}
    if case == "wrong key":
        options["password"] = hub.token("dev1", key=hub.key("dev2"))
    elif case == "expired token":
        options["password"] = hub.token("dev1", expiry=int(time.time()) - 1)
    elif case == "unregistered device":
        options = {"username": hub.username("ghost"), "client_id": "ghost", "password": hub.token("dev1")}
    elif case == "wrong client id":
        options["client_id"] = "dev2"
    elif case == "wrong resource":
        options["password"] = hub.token("dev2", key=hub.key("dev1"))
    elif case == "wrong hub name":
        options["username"] = "other-hub.azure-devices.net/dev1/?api-version=2021-04-12"
    elif case == "policy token":
        options["password"] = hub.token("dev1") + "&skn=device"
    device = devices(hub, **options)
    reason = device.connect()
    assert reason.is_failure and reason.getName() == "Not authorized"
    assert device.disconnected.wait(5)
    assert "(CONNACK 5)" in hub.log()


@pytest.mark.parametrize("username,password", [
    ("dev1", None), ("microagent-hub.local/dev1", None), (None, "not a token"),
    (None, "SharedAccessSignature sr=x&sig=y")])
def test_malformed_credentials_are_refused_bad_username_or_password(hub, devices, username, password):
    device = devices(hub, username=username, password=password)
    reason = device.connect()
    assert reason.is_failure and reason.getName() == "Bad user name or password"
    # what the log says never includes the token
    assert hub.token("dev1").split("sig=")[1].split("&")[0] not in hub.log()


def test_no_secret_in_the_log(hub, devices):
    hub.add_device("dev2")
    token = hub.token("dev1", key=hub.key("dev2"))
    devices(hub, password=token).connect()
    devices(hub).connect()
    log = hub.log()
    assert "dev1 connected" in log
    for secret in (token.split("sig=")[1].split("&")[0], hub.key("dev1"), hub.key("dev2")):
        assert secret not in log


def test_accepts_sdk_style_username_with_extra_parameters(hub, devices):
    username = "MICROAGENT-HUB.LOCAL/dev1/?api-version=2019-10-01&DeviceClientType=azure-iot-device%2F2.14.0"
    assert not devices(hub, username=username).connect().is_failure


def test_foreign_topic_disconnects_and_stores_nothing(hub, devices):
    hub.add_device("dev2")
    device = devices(hub)
    device.connect()
    assert not device.publish("devices/dev2/messages/events/", b"spoofed", qos=1)
    assert device.disconnected.wait(5)
    assert hub.messages() == []
    assert "may not use" in hub.log()


def test_qos2_publish_disconnects_and_stores_nothing(hub, devices):
    device = devices(hub)
    device.connect()
    device.client.publish("devices/dev1/messages/events/", b"exactly once?", qos=2)
    assert device.disconnected.wait(5)
    assert hub.messages() == []
    assert "QoS 2" in hub.log()


def test_subscriptions_granted_only_for_iot_hub_topics(hub, devices):
    device = devices(hub)
    device.connect()
    granted = device.subscribe("$iothub/twin/res/#", "$iothub/twin/PATCH/properties/desired/#",
                               "devices/dev1/messages/devicebound/#", "devices/dev2/messages/devicebound/#",
                               "#")
    assert granted == [1, 1, 1, 0x80, 0x80]


def test_twin_get_reported_patch_and_desired_push(hub, devices):
    device = devices(hub)
    device.connect()
    device.subscribe("$iothub/twin/res/#", "$iothub/twin/PATCH/properties/desired/#")
    device.publish("$iothub/twin/GET/?$rid=1", b"")
    topic, body = device.next_message()
    assert topic == "$iothub/twin/res/200/?$rid=1"
    assert json.loads(body) == {"desired": {"$version": 1}, "reported": {"$version": 1}}

    device.publish("$iothub/twin/PATCH/properties/reported/?$rid=2",
                   json.dumps({"applied": {"Process_CacheSize": 128}, "rejected": None}).encode())
    assert device.next_message() == ("$iothub/twin/res/204/?$rid=2&$version=2", b"")
    device.publish("$iothub/twin/PATCH/properties/reported/?$rid=3", b"not json")
    assert device.next_message()[0] == "$iothub/twin/res/400/?$rid=3"

    # the CLI runs as its own process and reaches the running server through the database
    out = subprocess.run([sys.executable, "-m", "hub_emulator", "set-desired", "--data", hub.data_dir, "dev1",
                          "Process_CacheSize=64", "CollectorsCore_PriorityIntervals=1,2,3"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    assert "$version 2" in out
    topic, body = device.next_message()
    assert topic == "$iothub/twin/PATCH/properties/desired/?$version=2"
    assert json.loads(body) == {"Process_CacheSize": 64, "CollectorsCore_PriorityIntervals": "1,2,3",
                                "$version": 2}

    device.publish("$iothub/twin/GET/?$rid=4", b"")
    topic, body = device.next_message()
    assert json.loads(body) == {
        "desired": {"Process_CacheSize": 64, "CollectorsCore_PriorityIntervals": "1,2,3", "$version": 2},
        "reported": {"applied": {"Process_CacheSize": 128}, "$version": 2}}


def test_twin_survives_a_restart(hub, devices):
    device = devices(hub)
    device.connect()
    device.subscribe("$iothub/twin/res/#")
    device.publish("$iothub/twin/PATCH/properties/reported/?$rid=1", b'{"state": "ok"}')
    device.next_message()
    hub.set_desired("dev1", {"Login_Disabled": True})
    device.close()
    hub.kill()
    hub.start()
    again = devices(hub)
    again.connect()
    again.subscribe("$iothub/twin/res/#")
    again.publish("$iothub/twin/GET/?$rid=2", b"")
    assert json.loads(again.next_message()[1]) == {"desired": {"Login_Disabled": True, "$version": 2},
                                                   "reported": {"state": "ok", "$version": 2}}


def test_no_reply_without_a_subscription(hub, devices):
    device = devices(hub)
    device.connect()
    device.publish("$iothub/twin/GET/?$rid=1", b"")
    with pytest.raises(queue.Empty):
        device.next_message(timeout=1)


def test_second_connection_with_same_id_closes_the_first(hub, devices):
    first = devices(hub)
    first.connect()
    second = devices(hub)
    assert not second.connect().is_failure
    assert first.disconnected.wait(5)
    assert not second.disconnected.is_set()
    assert second.publish("devices/dev1/messages/events/", b"from the second")
    assert [m["payload"] for m in hub.messages()] == [b"from the second"]


def test_module_identity(hub, devices):
    module = "dev1/DefenderIotMicroAgent"
    hub.add_device(module)
    device = devices(hub, module)
    assert not device.connect().is_failure
    assert device.subscribe("$iothub/twin/res/#", "devices/dev1/modules/DefenderIotMicroAgent/inputs/#",
                            "devices/dev1/messages/devicebound/#") == [1, 1, 0x80]
    assert device.publish("devices/dev1/modules/DefenderIotMicroAgent/messages/events/a=1", b"{}")
    assert [(m["device"], m["properties"]) for m in hub.messages()] == [(module, {"a": "1"})]
    device.publish("$iothub/twin/PATCH/properties/reported/?$rid=1", b'{"m": 1}')
    assert device.next_message()[0] == "$iothub/twin/res/204/?$rid=1&$version=2"
    assert hub.twin(module)["reported"] == {"m": 1, "$version": 2} and hub.twin("dev1")["reported"] == {"$version": 1}
    # the module may not publish as its device
    assert not device.publish("devices/dev1/messages/events/", b"{}")
    assert device.disconnected.wait(5)
