"""The agent registers through the emulator's DPS with an X.509 certificate ($MICROAGENT_DPS with
CertFile/KeyFile, `replay --dps`) on both engines (the firmware one inside MicroPython, through
its TLS's load_cert_chain), then connects to the assigned hub with the same certificate; the
assignment is cached (0600 in a 0700 folder) and a restart does not register again. A
certificate of a CA no group enrolled is refused in one line, non-zero exit, nothing stored."""
import json
import os
import stat
import subprocess

import pytest

from dps_helpers import MICROAGENT, TRACE, dps_endpoint, dps_env, replay


@pytest.mark.parametrize("engine", ["host", "firmware"])
def test_certificate_registers_sends_to_its_hub_and_a_restart_uses_the_cache(x509_hub, pki, tmp_path,
                                                                            engine):
    hub = x509_hub
    device = "cam-%s" % engine
    cert_file, key_file, _ = pki.device(device, device)
    env = dps_env(hub, hub.scope, device, cert=(cert_file, key_file))
    outbox = tmp_path / "state" / "outbox.db"
    first = replay(hub, engine, outbox, env)
    assert first.returncode == 0, first.stderr
    stored = hub.messages(device)
    assert stored and all(json.loads(m["payload"])["AgentId"] for m in stored)
    with open(pki.path("ca-a")) as f:
        assert hub.db.execute("SELECT ca_pem FROM x509_devices WHERE id = ?", (device,)).fetchone() \
            == (f.read(),)
    assert hub.key(device) is None
    cache = tmp_path / "state" / "dps-assignment.json"
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(cache.parent).st_mode) == 0o700
    assert json.loads(cache.read_text()) == {
        "GlobalEndpoint": "127.0.0.1:%d" % hub.state["dps_port"], "IdScope": hub.scope,
        "RegistrationId": device, "assignedHub": "localhost", "deviceId": device}
    assert hub.log().count("dps: %s connected" % device) == 1
    second = replay(hub, engine, outbox, env)
    assert second.returncode == 0, second.stderr
    assert hub.log().count("dps: %s connected" % device) == 1  # no second registration
    assert len(hub.messages(device)) > len(stored)


@pytest.mark.parametrize("engine", ["host", "firmware"])
def test_certificate_of_another_ca_is_refused_in_one_line_and_nothing_stored(x509_hub, pki, tmp_path,
                                                                            engine):
    hub = x509_hub
    cert_file, key_file, _ = pki.device("rogue", "rogue-1", ca="ca-b")
    state = tmp_path / "state"
    result = replay(hub, engine, state / "outbox.db", dps_env(hub, hub.scope, "rogue-1", cert=(cert_file, key_file)))
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "127.0.0.1:%d" % hub.state["dps_port"] in line, line
    assert not (state / "dps-assignment.json").exists()
    assert hub.messages() == []
    assert hub.db.execute("SELECT COUNT(*) FROM devices").fetchone()[0] == 0
    assert hub.db.execute("SELECT COUNT(*) FROM registrations").fetchone()[0] == 0


def test_settings_name_a_symmetric_key_or_a_certificate_and_its_files_exist(x509_hub, pki, tmp_path):
    hub = x509_hub
    cert_file, key_file, _ = pki.device("cam-1", "cam-1")
    endpoint = dps_endpoint(hub, hub.scope, "cam-1")
    cases = {
        endpoint + "CertFile=%s" % cert_file: "give SymmetricKey, or CertFile and KeyFile",
        endpoint + "CertFile=%s;KeyFile=%s;SymmetricKey=AAAA" % (cert_file, key_file):
            "give SymmetricKey, or CertFile and KeyFile",
        endpoint + "CertFile=%s;KeyFile=%s" % (cert_file, tmp_path / "none.key"):
            "KeyFile %s: no such file" % (tmp_path / "none.key"),
    }
    for text, error in cases.items():
        result = subprocess.run([MICROAGENT, "replay", TRACE, "--dps", "--ca", hub.ca],
                                env=dict(os.environ, MICROAGENT_DPS=text),
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert error in result.stderr, result.stderr
    both = subprocess.run([MICROAGENT, "replay", TRACE, "--dps", "--ca", hub.ca, "--cert", cert_file,
                           "--key", key_file],
                          env=dps_env(hub, hub.scope, "cam-1", cert=(cert_file, key_file)),
                          capture_output=True, text=True, timeout=60)
    assert both.returncode == 2 and "not --cert/--key" in both.stderr
