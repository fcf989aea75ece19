"""The firmware MQTT client and IoT Hub session inside real MicroPython (the unix port, with the
firmware cross-compiled to .mpy as on a board, heap capped at 64 KB), over real TLS, to a real
mosquitto broker."""
import json
import os

from microagent import hub
from microagent.sas import ConnectionString, sas_token
from subscriber import Subscriber
from twin_responder import TwinResponder

HERE = os.path.dirname(os.path.abspath(__file__))
KEY_B64 = "c2VjcmV0LWRldmljZS1rZXktZm9yLXRlc3RzLTAxMjM0NTY3ODk="
NOW = 1800000000


def _run(micropython, script, args, check=True, heap="64K"):
    proc = micropython(os.path.join(HERE, script), args, source=False, heap=heap,
                       timeout=60, check=check)
    return proc, json.loads(proc.stdout.strip().splitlines()[-1])


def _payload_file(tmp_path, data):
    path = tmp_path / "payload.bin"
    path.write_bytes(data)
    return str(path)


def test_qos1_publish_over_tls_arrives_byte_exact(micropython, mosquitto_factory, tmp_path):
    broker = mosquitto_factory({"device": "device-pass", "reader": "reader-pass"})
    subscriber = Subscriber(broker.port, broker.certs["ca.pem"], "reader", "reader-pass", "fw/#")
    try:
        payload = bytes(range(256)) + "{\"é\": \"ü\"}".encode() + b"\x00" * 700
        _, result = _run(micropython, "mp_publish.py",
                         [broker.port, broker.certs["ca.pem"], "device", "device-pass", "fw/qos1",
                          _payload_file(tmp_path, payload), 1])
        assert result["acked"] is True and result["pid"] == 1
        topic, received = subscriber.get()
        assert topic == "fw/qos1" and received == payload
    finally:
        subscriber.close()


def test_untrusted_ca_is_a_clear_error(micropython, mosquitto_factory, tmp_path):
    broker = mosquitto_factory({"device": "device-pass"})
    proc, result = _run(micropython, "mp_publish.py",
                        [broker.port, broker.certs["other-ca.pem"], "device", "device-pass", "fw/x", _payload_file(tmp_path, b"x"), 1],
                        check=False)
    assert proc.returncode == 3
    assert result["error"].startswith("TLSError: TLS to 127.0.0.1:%d: server certificate not trusted"
                                      % broker.port), result


def test_wrong_password_refused_without_echo(micropython, mosquitto_factory, tmp_path):
    broker = mosquitto_factory({"device": "device-pass"})
    proc, result = _run(micropython, "mp_publish.py",
                        [broker.port, broker.certs["ca.pem"], "device", "not-the-password", "fw/x", _payload_file(tmp_path, b"x"), 1],
                        check=False)
    assert proc.returncode == 3
    assert "MQTTRefused" in result["error"] and "not authorized" in result["error"]
    assert "not-the-password" not in proc.stdout + proc.stderr


def test_hub_session_sas_telemetry_and_twin(micropython, mosquitto_factory, tmp_path):
    # mosquitto cannot check SAS signatures, so the test fixes the device clock: the token the
    # firmware mints is then known, and the broker's password file holds exactly that token.
    # 96 KB heap: the whole session (hub, config, outbox loaded as .mpy on the 64-bit unix port,
    # where bytecode sits in the heap) needs about 80 KB; see bench/transport_heap.py.
    cs_text = "HostName=myhub.azure-devices.net;DeviceId=dev-01;SharedAccessKey=%s;GatewayHostName=127.0.0.1" % KEY_B64
    cs = ConnectionString(cs_text)
    token = sas_token(cs.resource(), cs.key, NOW + 3600)
    broker = mosquitto_factory({hub.username(cs): token, "reader": "reader-pass"})
    subscriber = Subscriber(broker.port, broker.certs["ca.pem"], "reader", "reader-pass",
                            "devices/dev-01/messages/events/#")
    responder = TwinResponder(broker.port, broker.certs["ca.pem"], "reader", "reader-pass",
                              {"Process_CacheSize": 64, "Login_Disabled": "nope", "$version": 2})
    payload_file = tmp_path / "message.json"
    payload = json.dumps({"AgentId": "x", "Events": [{"Name": "ConnectionCreate"}]}).encode()
    payload_file.write_bytes(payload)
    try:
        _, result = _run(micropython, "mp_hub_session.py",
                         [broker.port, broker.certs["ca.pem"], cs_text, NOW, str(payload_file)], heap="128K")
        assert result["delivered"] is True, result
        topic, received = subscriber.get()
        assert received == payload
        assert topic == hub.telemetry_topic(cs, result["mid"])
        assert "%24.ifid=urn%3Aazureiot%3ASecurity%3ASecurityAgent%3A1&%24.ct=application%2Fjson&%24.ce=utf-8" in topic
        assert result["twin"] is True and result["report_status"] == 204
        assert result["config"]["Process_CacheSize"] == 64 and result["config"]["Login_Disabled"] is False
        report = responder.reports.get(timeout=5)
        assert report["config"]["Process_CacheSize"] == 64
        assert report["config_rejected"] == {"Login_Disabled": "expected true or false"}
        for line in result["logs"]:
            assert token.split("sig=")[1][:20] not in line and KEY_B64[:16] not in line
    finally:
        responder.close()
        subscriber.close()


def test_firmware_client_on_cpython_over_tls(mosquitto_factory):
    # The same client under CPython (the firmware engine's --runtime cpython), through the
    # CPython stream adapter, with CPython's ssl verifying the certificate.
    from microagent import mqtt
    broker = mosquitto_factory({"device": "device-pass", "reader": "reader-pass"})
    subscriber = Subscriber(broker.port, broker.certs["ca.pem"], "reader", "reader-pass", "cp/#")
    with open(broker.certs["ca.pem"], "rb") as f:
        ca_der = mqtt.pem_to_der(f.read())
    client = mqtt.MQTTClient("cpython-fw", user="device", timeout_ms=5000)
    try:
        mqtt.run(client.connect(mqtt.run(mqtt.open_connection("127.0.0.1", broker.port, ca_der)),
                                password="device-pass"))
        pid = mqtt.run(client.publish("cp/x", b"\x00payload\xff", qos=1))
        for _ in range(200):
            if not client.pending(pid):
                break
            mqtt.run(client.poll(10))
        assert not client.pending(pid)
        assert subscriber.get() == ("cp/x", b"\x00payload\xff")
        with open(broker.certs["other-ca.pem"], "rb") as f:
            other = mqtt.pem_to_der(f.read())
        try:
            mqtt.run(mqtt.open_connection("127.0.0.1", broker.port, other))
        except mqtt.TLSError as exc:
            assert "server certificate not trusted" in str(exc)
        else:
            raise AssertionError("a server certificate from another CA was accepted")
    finally:
        client.disconnect()
        subscriber.close()
