"""X.509 device authentication at the emulator's hub (hub add-device --x509-ca / --x509-thumbprint)
with paho-mqtt clients and the host agent (replay --cert --key): a certificate signed by the
enrolled CA with CN = the device id connects; another CN, another thumbprint, no certificate or a
SAS token get CONNACK 5; a certificate from a CA the hub does not know fails the TLS handshake."""
import hashlib
import json
import os
import ssl
import subprocess
import threading

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives import serialization

from dps_helpers import MICROAGENT, TRACE, hub_cli
from hub_emulator.process import HubProcess


def connect(hub, device_id, cert=None, password=None):
    """How paho names the CONNACK of a CONNECT over TLS with the client certificate CERT (files):
    "Success", "Not authorized" for return code 5, or "refused in TLS"."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device_id, protocol=mqtt.MQTTv311)
    client.username_pw_set(hub.username(device_id), password)
    client.tls_set(ca_certs=hub.ca, certfile=cert and cert[0], keyfile=cert and cert[1])
    done = threading.Event()
    result = {}

    def on_connect(c, userdata, flags, reason_code, properties):
        result["rc"] = reason_code
        done.set()

    def on_disconnect(c, userdata, flags, reason_code, properties):
        done.set()  # before any CONNACK: the server ended the TLS session
    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    try:
        client.connect("127.0.0.1", hub.port)
    except (ssl.SSLError, OSError):
        return "refused in TLS"
    client.loop_start()
    try:
        assert done.wait(10), "no CONNACK and no disconnect"
        if "rc" not in result:
            return "refused in TLS"
        if not result["rc"].is_failure:
            info = client.publish("devices/%s/messages/events/" % device_id, b'{"x509":1}', qos=1)
            info.wait_for_publish(10)
        return result["rc"].getName()
    finally:
        client.disconnect()
        client.loop_stop()


def test_add_device_with_x509_ca_prints_an_x509_connection_string(tmp_path, pki):
    result = hub_cli("add-device", "--data", tmp_path / "hub", "cam-1", "--x509-ca", pki.path("ca-a"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ("HostName=microagent-hub.local;DeviceId=cam-1;x509=true;"
                                     "GatewayHostName=127.0.0.1")
    bad = hub_cli("add-device", "--data", tmp_path / "hub", "cam-2", "--x509-ca", pki.root + "/ca-a.key")
    assert bad.returncode == 2 and "not a PEM certificate" in bad.stderr
    short = hub_cli("add-device", "--data", tmp_path / "hub", "cam-3", "--x509-thumbprint", "abc")
    assert short.returncode == 2 and "40 or 64 hex digits" in short.stderr


def test_certificates_are_checked_against_the_enrolled_ca_the_cn_and_the_thumbprint(tmp_path, pki):
    good = pki.device("good", "cam-1")
    wrong_cn = pki.device("wrong-cn", "cam-9")
    other_ca = pki.device("other-ca", "cam-1", ca="ca-b")
    pinned = pki.device("pinned", "cam-2")
    unpinned = pki.device("unpinned", "cam-2")
    assert hub_cli("add-device", "--data", tmp_path / "hub", "cam-1", "--x509-ca",
                   pki.path("ca-a")).returncode == 0
    thumbprint = hashlib.sha256(pinned[2].public_bytes(serialization.Encoding.DER)).hexdigest()
    assert hub_cli("add-device", "--data", tmp_path / "hub", "cam-2", "--x509-thumbprint",
                   thumbprint).returncode == 0
    with HubProcess(tmp_path / "hub") as hub:
        assert connect(hub, "cam-1", good[:2]) == "Success"
        assert connect(hub, "cam-1", wrong_cn[:2]) == "Not authorized"
        assert connect(hub, "cam-1") == "Not authorized"
        assert connect(hub, "cam-1", password=hub.token("cam-1", key="QUFBQQ==")) == "Not authorized"
        assert connect(hub, "cam-2", pinned[:2]) == "Success"
        assert connect(hub, "cam-2", unpinned[:2]) == "Not authorized"
        assert connect(hub, "cam-1", other_ca[:2]) == "refused in TLS"  # a CA the hub does not know
        log = hub.log()
        assert [json.loads(m["payload"]) for m in hub.messages()] == [{"x509": 1}, {"x509": 1}]
    assert "client certificate CN is not the device id 'cam-1' (CONNACK 5)" in log
    assert log.count("no client certificate for X.509 device 'cam-1' (CONNACK 5)") == 2  # none, a SAS token
    assert "client certificate thumbprint mismatch (CONNACK 5)" in log


@pytest.mark.parametrize("engine", ["host", "firmware"])
def test_agent_sends_with_its_certificate(tmp_path, pki, engine):
    cert, key, _ = pki.device("agent", "gw-x509")
    connection_string = hub_cli("add-device", "--data", tmp_path / "hub", "gw-x509", "--x509-ca",
                                pki.path("ca-a")).stdout.strip()
    with HubProcess(tmp_path / "hub") as hub:
        env = dict(os.environ, MICROAGENT_CONNECTION_STRING=connection_string)
        result = subprocess.run([MICROAGENT, "replay", TRACE, "--engine", engine, "--window", "600",
                                 "--ca", hub.ca, "--port", str(hub.port), "--cert", cert, "--key", key,
                                 "--outbox", str(tmp_path / "outbox.db"), "--timeout", "20"],
                                env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        stored = len(hub.messages("gw-x509"))
        assert stored
        without = subprocess.run([MICROAGENT, "replay", TRACE, "--engine", engine, "--ca", hub.ca,
                                  "--port", str(hub.port), "--outbox", str(tmp_path / "o2.db"),
                                  "--timeout", "5"],
                                 env=env, capture_output=True, text=True, timeout=120)
        assert len(hub.messages("gw-x509")) == stored  # nothing more without the certificate
    assert without.returncode == 2 and len(without.stderr.strip().splitlines()) == 1, without.stderr
    if engine == "host":
        assert "x509=true connection string goes with --cert FILE --key FILE" in without.stderr
    else:  # no certificate: the hub refuses the connection
        assert "not authorized" in without.stderr
