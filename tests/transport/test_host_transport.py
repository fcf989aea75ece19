"""The host transport (paho-mqtt 2.x + SQLite outbox) against a real mosquitto with TLS and a
password file: plain-MQTT mode, IoT Hub mode with SAS and twin, a broker restart and an agent
restart in the middle of a run, wrong CA, wrong password, message expiry."""
import json
import re
import urllib.parse

import pytest

from host_sim.outbox import SqliteOutbox
from host_sim.transport import Transport, parse_broker_url
from microagent import hub
from microagent.sas import ConnectionString, sas_token
from subscriber import Subscriber
from twin_responder import TwinResponder
from polling import wait_for

KEY_B64 = "c2VjcmV0LWRldmljZS1rZXktZm9yLXRlc3RzLTAxMjM0NTY3ODk="
MID = re.compile(r"&%24\.mid=([0-9a-f]{32})$")


def _url(broker, user, password, scheme="mqtts"):
    return "%s://%s:%s@127.0.0.1:%d" % (scheme, urllib.parse.quote(user, safe=""),
                                        urllib.parse.quote(password, safe=""), broker.port)


def _wait(predicate, timeout=15):
    return wait_for(predicate, timeout)


def test_parse_broker_url():
    assert parse_broker_url("mqtts://agent:p%40ss@broker.local:8884") == (
        True, "broker.local", 8884, "agent", "p@ss")
    assert parse_broker_url("mqtt://10.0.0.2") == (False, "10.0.0.2", 1883, None, None)
    assert parse_broker_url("mqtts://h") == (True, "h", 8883, None, None)
    for bad, reason in (("http://u:secretpw@h", "scheme must be mqtt:// or mqtts://"),
                        ("mqtts://u:secretpw@", "no host name"),
                        ("mqtts://u:secretpw@h:notaport", "not a valid URL"),
                        ("mqtts://u:secretpw@h/topic", "unexpected path")):
        with pytest.raises(ValueError) as info:
            parse_broker_url(bad)
        assert reason in str(info.value) and "secretpw" not in str(info.value)


def test_plain_mode_delivers_every_message(mosquitto_factory, tmp_path):
    broker = mosquitto_factory({"agent": "agent pass/:@", "reader": "reader-pass"})
    subscriber = Subscriber(broker.port, broker.certs["ca.pem"], "reader", "reader-pass", "devices/#")
    logs = []
    outbox = SqliteOutbox(str(tmp_path / "outbox.db"))
    transport = Transport(outbox, broker=_url(broker, "agent", "agent pass/:@"),
                          ca_file=broker.certs["ca.pem"], client_id="gw-7", log=logs.append)
    try:
        transport.start()
        sent = {}
        for i in range(30):
            body = json.dumps({"n": i}).encode()
            sent[transport.send(body)] = body
        assert transport.flush(20)
        received = subscriber.drain(30)
        assert len(received) == 30
        for topic, body in received:
            assert topic.startswith("devices/gw-7/messages/events/%24.ifid=urn%3Aazureiot%3ASecurity")
            assert sent[MID.search(topic).group(1)] == body
        assert outbox.count() == 0 and outbox.counters()["delivered"] == 30
        assert not any("agent pass" in line for line in logs)
    finally:
        transport.close()
        subscriber.close()
        outbox.close()


def test_broker_and_agent_restart_lose_nothing(mosquitto_factory, tmp_path):
    broker = mosquitto_factory({"agent": "agent-pass", "reader": "reader-pass"})
    # The reader keeps a persistent session, so messages published while it reconnects after
    # the broker restart are kept for it by mosquitto.
    subscriber = Subscriber(broker.port, broker.certs["ca.pem"], "reader", "reader-pass", "devices/#",
                            client_id="reader-persistent", clean_session=False)
    path = str(tmp_path / "outbox.db")
    url = _url(broker, "agent", "agent-pass")
    sent = {}

    def send_batch(transport, first, count):
        for i in range(first, first + count):
            body = json.dumps({"n": i}).encode()
            sent[transport.send(body)] = body

    outbox = SqliteOutbox(path)
    transport = Transport(outbox, broker=url, ca_file=broker.certs["ca.pem"], client_id="gw-r",
                          log=lambda line: None)
    try:
        transport.start()
        send_batch(transport, 0, 20)
        assert transport.flush(20)
        broker.stop()                          # broker outage
        send_batch(transport, 20, 20)          # queued in SQLite while the broker is away
        transport.close()                      # the agent stops too ...
        outbox.close()
        outbox = SqliteOutbox(path)            # ... and restarts: the queue is on disk
        assert outbox.count() == 20
        transport = Transport(outbox, broker=url, ca_file=broker.certs["ca.pem"], client_id="gw-r",
                              log=lambda line: None)
        transport.start()                      # broker still down: retried in the background
        send_batch(transport, 40, 5)
        broker.start()
        assert transport.flush(60), "outbox not drained after the broker came back"
        received = {}
        while len(received) < len(sent):
            topic, body = subscriber.get(timeout=20)
            mid = MID.search(topic).group(1)
            assert sent[mid] == body           # a duplicate carries the same id and body
            received[mid] = body
        assert received == sent and len(sent) == 45
    finally:
        transport.close()
        subscriber.close()
        outbox.close()


def test_iot_hub_mode_sas_twin_and_property_bag(mosquitto_factory, tmp_path):
    now = 1800000000
    cs_text = ("HostName=myhub.azure-devices.net;DeviceId=dev-02;SharedAccessKey=%s;"
               "GatewayHostName=127.0.0.1" % KEY_B64)
    cs = ConnectionString(cs_text)
    token = sas_token(cs.resource(), cs.key, now + 3600)
    broker = mosquitto_factory({hub.username(cs): token, "reader": "reader-pass"})
    subscriber = Subscriber(broker.port, broker.certs["ca.pem"], "reader", "reader-pass",
                            "devices/dev-02/messages/events/#")
    responder = TwinResponder(broker.port, broker.certs["ca.pem"], "reader", "reader-pass",
                              {"NetworkActivity_CacheSize": 512, "Process_MessageFrequency": "Often"})
    changes = []
    logs = []
    outbox = SqliteOutbox(str(tmp_path / "outbox.db"))
    transport = Transport(outbox, connection_string=cs_text, ca_file=broker.certs["ca.pem"],
                          port=broker.port, sas_clock=lambda: now, on_config=changes.append,
                          log=logs.append)
    try:
        transport.start()
        mid = transport.send(b'{"Events": []}')
        assert transport.flush(20)
        topic, body = subscriber.get()
        assert body == b'{"Events": []}' and topic == hub.telemetry_topic(cs, mid)
        report = responder.reports.get(timeout=10)
        assert report["config"]["NetworkActivity_CacheSize"] == 512
        assert "Process_MessageFrequency" in report["config_rejected"]
        assert changes == [{"NetworkActivity_CacheSize": 512}]
        assert transport.config["Process_MessageFrequency"] == "Medium"
        assert _wait(lambda: (transport.pump(), transport.twin.last_report_status == 204)[1])
        joined = "\n".join(logs)
        assert token.split("sig=")[1][:16] not in joined and KEY_B64[:16] not in joined
    finally:
        transport.close()
        responder.close()
        subscriber.close()
        outbox.close()


def test_untrusted_ca_is_a_clear_error(mosquitto_factory, tmp_path):
    broker = mosquitto_factory({"agent": "agent-pass"})
    outbox = SqliteOutbox(str(tmp_path / "outbox.db"))
    transport = Transport(outbox, broker=_url(broker, "agent", "agent-pass"),
                          ca_file=broker.certs["other-ca.pem"], log=lambda line: None)
    with pytest.raises(ValueError) as info:
        transport.start()
    assert "server certificate not trusted" in str(info.value)
    assert "agent-pass" not in str(info.value)
    outbox.close()


def test_wrong_password_keeps_messages(mosquitto_factory, tmp_path):
    broker = mosquitto_factory({"agent": "agent-pass"})
    logs = []
    outbox = SqliteOutbox(str(tmp_path / "outbox.db"))
    transport = Transport(outbox, broker=_url(broker, "agent", "wrong-pass"),
                          ca_file=broker.certs["ca.pem"], log=logs.append)
    try:
        transport.start()
        transport.send(b"{}")
        assert not transport.flush(2)
        assert outbox.count() == 1
        assert transport.last_error and "refused" in transport.last_error
        assert not any("wrong-pass" in line for line in logs)
    finally:
        transport.close()
        outbox.close()


def test_outbox_expiry_counts_and_keeps_order(tmp_path):
    clock = [1000.0]
    outbox = SqliteOutbox(str(tmp_path / "o.db"), timeout_min=10, clock=lambda: clock[0])
    first = outbox.put(b"old")
    clock[0] += 300
    second = outbox.put(b"new")
    assert [row[1] for row in outbox.pending()] == [first, second]
    clock[0] += 301  # "old" is now 601 s > 10 min old
    assert outbox.expire() == 1
    assert [row[2] for row in outbox.pending()] == [b"new"]
    assert outbox.counters() == {"delivered": 0, "expired": 1}


def test_outbox_rejects_a_file_that_is_not_sqlite(tmp_path):
    path = tmp_path / "not.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ValueError) as info:
        SqliteOutbox(str(path))
    assert "not.db" in str(info.value)


def test_iot_hub_mode_throttled_twin_get_is_asked_again_after_the_backoff(mosquitto_factory, tmp_path):
    # IoT Hub answers 429 when it throttles a twin request: the device asks again, later,
    # with a new $rid (the session policy's wait: RETRY_MIN_S, then doubling).
    now = 1800000000
    cs_text = ("HostName=myhub.azure-devices.net;DeviceId=dev-03;SharedAccessKey=%s;"
               "GatewayHostName=127.0.0.1" % KEY_B64)
    cs = ConnectionString(cs_text)
    broker = mosquitto_factory({hub.username(cs): sas_token(cs.resource(), cs.key, now + 3600),
                                "reader": "reader-pass"})
    responder = TwinResponder(broker.port, broker.certs["ca.pem"], "reader", "reader-pass",
                              {"Process_CacheSize": 48}, get_statuses=[429, 503])
    logs = []
    outbox = SqliteOutbox(str(tmp_path / "outbox.db"))
    transport = Transport(outbox, connection_string=cs_text, ca_file=broker.certs["ca.pem"],
                          port=broker.port, sas_clock=lambda: now, log=logs.append,
                          retry_min_s=0.3, retry_max_s=5)
    try:
        transport.start()
        report = responder.reports.get(timeout=20)
        assert report["config"]["Process_CacheSize"] == 48 and transport.twin.received
        gets = [responder.gets.get(timeout=1) for _ in range(3)]
        assert len({rid for rid, _ in gets}) == 3
        assert gets[1][1] - gets[0][1] >= 0.3 and gets[2][1] - gets[1][1] >= 0.6
        assert responder.gets.empty()
        assert any("status 429" in line for line in logs) and any("status 503" in line for line in logs)
    finally:
        transport.close()
        responder.close()
        outbox.close()
