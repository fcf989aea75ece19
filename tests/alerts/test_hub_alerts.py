"""Hub-side alerts: a real hub emulator process refuses CONNECTs made by a real MQTT client
(paho over TLS) with a wrong key, an expired token and an unknown device id, refuses topics,
and sees one device connected from two addresses; it counts them in hub.db (bounded, without
the token), and `microagent alerts` / `incidents` raise the hub_event rules from them, in
memory and into the cloud store; refused X.509 client certificates and refused DPS registrations
raise theirs."""
import base64
import datetime
import json
import os
import sqlite3
import subprocess
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hub_emulator import dps as dps_service
from hub_emulator import registry, sas
from hub_emulator.database import (MAX_EVENT_DEVICES, OTHER_DEVICES, open_db,
                                   record_hub_event)
from hub_emulator.process import HubProcess
from hub_replays import MICROAGENT, Lines
from microagent import dps as dps_client
from microagent import mqtt as mqtt_core
from polling import wait_for

TIMEOUT = 20
FLOOD = 25
WRONG_KEY = base64.b64encode(b"not the device key, 32 bytes..!!").decode()


class Client:
    """One paho connection to the hub from BIND (a loopback address of this machine)."""

    def __init__(self, hub, client_id, password, bind="127.0.0.1", username=None, cert=None):
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv311)
        self.client.username_pw_set(username or hub.username(client_id), password)
        self.client.tls_set(ca_certs=hub.ca, certfile=cert and cert[0], keyfile=cert and cert[1])
        self.client.reconnect_delay_set(min_delay=60, max_delay=60)
        self.answer = threading.Event()
        self.gone = threading.Event()
        self.reason = None
        self.subacks = []
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *args: self.gone.set()
        self.client.on_subscribe = lambda c, u, mid, codes, p: self.subacks.append(
            [code.value for code in codes])
        self.client.connect("127.0.0.1", hub.port, keepalive=60, bind_address=bind)
        self.client.loop_start()
        assert self.answer.wait(TIMEOUT), "no CONNACK"

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.reason = reason_code
        self.answer.set()

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def refused(hub, client_id, password, cert=None):
    client = Client(hub, client_id, password, cert=cert)
    try:
        return client.reason.is_failure
    finally:
        client.close()


def hub_events(hub):
    db = sqlite3.connect(os.path.join(hub.data_dir, "hub.db"))
    try:
        rows = db.execute("SELECT device, kind, count, peers, detail FROM hub_events").fetchall()
    finally:
        db.close()
    return [{"device": r[0], "kind": r[1], "count": r[2], "peers": json.loads(r[3]),
             "detail": r[4]} for r in rows]


def totals(events):
    found = {}
    for e in events:
        found[(e["device"], e["kind"])] = found.get((e["device"], e["kind"]), 0) + e["count"]
    return found


def run(*args):
    done = subprocess.run([MICROAGENT] + [str(a) for a in args], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.fixture(scope="module")
def attacked_hub(tmp_path_factory):
    """dev1 attacked: a flood of CONNECTs signed with a wrong key, an expired token, a second
    connection from another address; dev2 reaching for dev1's topics; a device id never
    registered."""
    tmp = tmp_path_factory.mktemp("hub-alerts")
    hub = HubProcess(tmp / "hub", port=0, plain_port=None)
    with hub:
        hub.add_device("dev1")
        hub.add_device("dev2")
        for _ in range(FLOOD):
            assert refused(hub, "dev1", hub.token("dev1", key=WRONG_KEY))
        assert refused(hub, "dev1", hub.token("dev1", expiry=int(time.time()) - 60))
        assert refused(hub, "ghost", hub.token("ghost", key=WRONG_KEY))
        assert refused(hub, "dev1", "SharedAccessSignature sr=x")   # not a token at all

        dev2 = Client(hub, "dev2", hub.token("dev2"))
        assert not dev2.reason.is_failure
        dev2.client.subscribe("devices/dev1/messages/devicebound/#", qos=1)
        assert wait_for(lambda: dev2.subacks, TIMEOUT) == [[0x80]]
        dev2.client.publish("devices/dev1/messages/events/", b"{}", qos=1)
        assert dev2.gone.wait(TIMEOUT), "the hub kept a device publishing to another's topic"
        dev2.close()

        first = Client(hub, "dev1", hub.token("dev1"))
        assert not first.reason.is_failure
        second = Client(hub, "dev1", hub.token("dev1"), bind="127.0.0.2")
        assert not second.reason.is_failure
        assert first.gone.wait(TIMEOUT), "the older session of dev1 was left open"
        second.close()
        first.close()
        yield hub, tmp


def test_the_hub_counts_each_refusal_per_device_kind_and_hour_without_the_token(attacked_hub):
    hub, _ = attacked_hub
    events = hub_events(hub)
    counts = totals(events)
    assert counts == {("dev1", "invalid-sas-signature"): FLOOD,
                      ("dev1", "expired-sas-token"): 1,
                      ("ghost", "unknown-device"): 1,
                      ("dev1", "refused-connect"): 1,
                      ("dev2", "refused-topic"): 2,
                      ("dev1", "device-connected-twice"): 1}
    # a flood is a row per hour (two if the test crossed an hour), not a row per CONNECT
    assert len([e for e in events if e["kind"] == "invalid-sas-signature"]) <= 2
    twice = [e for e in events if e["kind"] == "device-connected-twice"][0]
    assert twice["peers"] == ["127.0.0.2"]
    assert "127.0.0.1" in twice["detail"] and "older session was closed" in twice["detail"]
    topics = sorted(e["detail"] for e in events if e["kind"] == "refused-topic")
    assert "devices/dev1/messages/events/" in "".join(topics)
    secrets = [hub.key("dev1"), hub.key("dev2"), WRONG_KEY,
               hub.token("dev1").partition("sig=")[2].partition("&")[0]]
    stored = json.dumps(events)
    log = hub.log()
    assert not any(secret in stored or secret in log for secret in secrets)


def test_alerts_raise_the_hub_event_rules_with_their_techniques(attacked_hub):
    hub, _ = attacked_hub
    found = [r for r in run("alerts", "--data", hub.data_dir, "--json") if r["kind"] == "alert"]
    hub_rules = {"invalid-sas-signature", "expired-sas-token", "unknown-device",
                 "refused-connect", "refused-topic", "device-connected-twice"}
    mine = [r for r in found if r["rule"] in hub_rules]
    got = {}
    for r in mine:
        got[(r["device"], r["rule"])] = got.get((r["device"], r["rule"]), 0) + r["count"]
    assert got == {("dev1", "invalid-sas-signature"): FLOOD, ("dev1", "expired-sas-token"): 1,
                   ("ghost", "unknown-device"): 1, ("dev1", "refused-connect"): 1,
                   ("dev2", "refused-topic"): 2, ("dev1", "device-connected-twice"): 1}
    by_rule = {r["rule"]: r for r in mine}
    assert by_rule["invalid-sas-signature"]["technique"] == ["T1110", "T1078"]
    assert by_rule["device-connected-twice"]["technique"] == ["T1078", "T1550"]
    assert by_rule["invalid-sas-signature"]["severity"] == "Medium"
    assert "127.0.0.1" in by_rule["invalid-sas-signature"]["title"]
    for r in mine:
        assert r["what_to_do"] and r["evidence"] and r["first"] <= r["last"]
    incidents = run("incidents", "--data", hub.data_dir, "--json")
    assert any(step["rule"] == "device-connected-twice" for i in incidents if i["device"] == "dev1"
               for step in i["timeline"])


def test_into_the_store_once_and_updated_when_the_hub_counts_more(attacked_hub, tmp_path):
    hub, _ = attacked_hub
    store = tmp_path / "cloud.db"
    first = run("alerts", "--data", hub.data_dir, "--store", store, "--json")
    signature = [r for r in first if r["rule"] == "invalid-sas-signature"]
    assert sum(r["count"] for r in signature) == FLOOD
    assert run("alerts", "--data", hub.data_dir, "--store", store, "--json") == []
    assert refused(hub, "dev1", hub.token("dev1", key=WRONG_KEY))
    again = run("alerts", "--data", hub.data_dir, "--store", store, "--json")
    assert [(r["rule"], r["device"]) for r in again] == [("invalid-sas-signature", "dev1")]
    held = run("alerts", "--store", store, "--json", "--rule", "invalid-sas-signature")
    assert sum(r["count"] for r in held) == FLOOD + 1


def test_a_follower_sees_each_new_count(attacked_hub):
    hub, _ = attacked_hub
    hub.add_device("dev3")
    follower = subprocess.Popen([MICROAGENT, "alerts", "--data", hub.data_dir, "--follow",
                                 "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    try:
        lines = Lines(follower.stdout)

        def signature(text):
            record = json.loads(text)
            return record["device"] == "dev3" and record["rule"] == "invalid-sas-signature"
        assert refused(hub, "dev3", hub.token("dev3", key=WRONG_KEY))
        first = json.loads(lines.wait_for(signature, 60))
        assert (first["status"], first["count"]) == ("new", 1)
        assert refused(hub, "dev3", hub.token("dev3", key=WRONG_KEY))
        second = json.loads(lines.wait_for(signature, 60))
        if second["key"] == first["key"]:
            assert (second["status"], second["count"]) == ("updated", 2)
        else:   # the two CONNECTs fell in two hours: one row, and one alert, each
            assert (second["status"], second["count"]) == ("new", 1)
    finally:
        follower.terminate()
        follower.wait(30)


def test_a_flood_of_made_up_device_ids_is_bounded(tmp_path):
    db = open_db(str(tmp_path / "hub"))
    now = 1767225600.0 + 10
    for i in range(MAX_EVENT_DEVICES + 40):
        for _ in range(2):
            record_hub_event(db, "made-up-%d" % i, "unknown-device", "198.51.100.%d" % (i % 250),
                             "device is not registered", now=now)
    rows = db.execute("SELECT device, count, peers FROM hub_events").fetchall()
    assert len(rows) == MAX_EVENT_DEVICES + 1
    other = [r for r in rows if r[0] == OTHER_DEVICES]
    assert other[0][1] == 2 * 40 and len(json.loads(other[0][2])) == 8
    # the next hour starts over
    record_hub_event(db, "made-up-0", "unknown-device", "198.51.100.1", "x", now=now + 3600)
    assert db.execute("SELECT COUNT(*) FROM hub_events").fetchone()[0] == MAX_EVENT_DEVICES + 2
    db.close()


def test_sas_names_the_refusal_kind():
    key = base64.b64encode(os.urandom(32)).decode()
    good = sas.parse_token(sas.make_token("h", "d", key))
    with pytest.raises(sas.TokenRejected) as caught:
        sas.verify(good, "h", "d", WRONG_KEY)
    assert caught.value.kind == "invalid-sas-signature"
    with pytest.raises(sas.TokenRejected) as caught:
        sas.verify(sas.parse_token(sas.make_token("h", "d", key, expiry=1000)), "h", "d", key)
    assert caught.value.kind == "expired-sas-token"


def _certificate(cn, key, issuer_cn, issuer_key, ca=False):
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn)]))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(issuer_key, hashes.SHA256()))


def _write_pem(folder, name, cert, key):
    paths = os.path.join(folder, name + ".pem"), os.path.join(folder, name + ".key")
    with open(paths[0], "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(paths[1], "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return paths


def test_refused_certificates_and_dps_registrations_raise_their_rules(tmp_path):
    ca_key, device_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("fleet-ca", ca_key, "fleet-ca", ca_key, ca=True)
    wrong_cn = _write_pem(str(tmp_path), "wrong-cn", _certificate("cam-9", device_key, "fleet-ca", ca_key),
                          device_key)
    stranger_key = base64.b64encode(os.urandom(32)).decode()
    hub = HubProcess(tmp_path / "hub", port=0, plain_port=None, extra_args=["--dps-port", "0"])
    with hub:
        registry.add_x509_device(hub.db, "cam-1", ca.public_bytes(serialization.Encoding.PEM).decode())
        assert refused(hub, "cam-1", None, cert=wrong_cn)
        assert refused(hub, "cam-1", None)     # an X.509 device without a certificate
        scope, _ = dps_service.add_group(hub.db, "sensors")
        settings = dps_client.DpsSettings(
            "GlobalEndpoint=127.0.0.1:%d;IdScope=%s;RegistrationId=intruder-1;SymmetricKey=%s"
            % (hub.state["dps_port"], scope, stranger_key))
        with open(hub.ca_der, "rb") as f:
            with pytest.raises(dps_client.DpsRefused):
                mqtt_core.run(dps_client.provision(settings, f.read()))
        log = hub.log()
    found = [r for r in run("alerts", "--data", hub.data_dir, "--json") if r["kind"] == "alert"]
    by_rule = {(r["device"], r["rule"]): r for r in found}
    certificate = by_rule[("cam-1", "refused-certificate")]
    assert (certificate["count"], certificate["severity"]) == (2, "Medium")
    assert certificate["technique"] == ["T1078", "T1649"]
    assert "127.0.0.1" in certificate["title"]
    # one row per device, kind and hour: its detail is the latest refusal's
    assert [e["detail"] for e in hub_events(hub) if e["kind"] == "refused-certificate"] == [
        "no client certificate for X.509 device 'cam-1'"]
    assert "client certificate CN is not the device id 'cam-1' (CONNACK 5)" in log
    registration = by_rule[("intruder-1", "dps-registration-refused")]
    assert (registration["count"], registration["severity"]) == (1, "Medium")
    assert registration["technique"] == ["T1078", "T1110"]
    assert "not signed with a key of any enrollment group" in registration["title"]
    assert stranger_key not in json.dumps(found) + json.dumps(hub_events(hub)) + log
