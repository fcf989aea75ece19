"""Per-board certificates from flash.py (--dps --dps-ca FILE, the CA's key from an owner-only file
or $MICROAGENT_DPS_CA_KEY): each board gets its own certificate (CN = its registration id) and key,
written onto its flash with DPS settings naming them; the CA key never goes onto the board, into
the output or onto argv. Flashed onto the virtual board (the real unix port), the agent registers
through the emulator's DPS X.509 group with that certificate and sends to the assigned hub."""
import json
import os
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from board_helpers import REPO, run_tool
from polling import wait_for

sys.path.insert(0, os.path.join(REPO, "tests", "hub"))

from dps_helpers import add_x509_group, certificate, dps_hub_process  # noqa: E402


class FactoryCa:
    """A CA certificate (ca.pem) and its key (ca.key, 0600) under FOLDER."""

    def __init__(self, folder, name="factory-ca"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = certificate(name, key, name, key, ca=True, days=365)
        self.cert = cert
        self.cert_file = os.path.join(folder, name + ".pem")
        self.key_file = os.path.join(folder, name + ".key")
        with open(self.cert_file, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        self.key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())
        fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(self.key_pem)
        self.key_der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())


@pytest.fixture
def ca(tmp_path):
    folder = tmp_path / "factory"
    folder.mkdir()
    return FactoryCa(str(folder))


def _events(proc):
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def test_dry_run_issues_a_certificate_per_board_and_never_shows_the_ca_key(ca, tmp_path):
    env = dict(os.environ, MICROAGENT_DPS_GROUP="GlobalEndpoint=127.0.0.1:8884;IdScope=0ne00000001",
               MICROAGENT_DPS_CA_KEY=ca.key_pem.decode())
    result = run_tool("flash.py", "--board", "unix", "--dry-run", "--json", "--dps", "--dps-ca",
                      ca.cert_file, "--registration-id", "mcu-0a1b", env=env)
    assert result.returncode == 0, result.stderr
    assert ca.key_pem.decode().splitlines()[1] not in result.stdout + result.stderr
    plans = {os.path.basename(e["path"]): e for e in _events(result) if e["event"] == "plan"}
    assert plans["microagent_key.der"]["sha256"] is None           # the board's key: secret
    assert "CN=mcu-0a1b issued by CN=factory-ca" in plans["microagent_cert.der"]["origin"]
    assert "RegistrationId=mcu-0a1b" in plans["microagent_device.json"]["origin"]
    # the key from an owner-only file works the same; a readable one is refused in one line
    env.pop("MICROAGENT_DPS_CA_KEY")
    from_file = run_tool("flash.py", "--board", "unix", "--dry-run", "--dps", "--dps-ca", ca.cert_file,
                         "--dps-ca-key", ca.key_file, "--registration-id", "mcu-0a1b", env=env)
    assert from_file.returncode == 0, from_file.stderr
    os.chmod(ca.key_file, 0o644)
    loose = run_tool("flash.py", "--board", "unix", "--dry-run", "--dps", "--dps-ca", ca.cert_file,
                     "--dps-ca-key", ca.key_file, "--registration-id", "mcu-0a1b", env=env)
    assert loose.returncode == 2 and len(loose.stderr.strip().splitlines()) == 1, loose.stderr
    assert "others may read it (mode 644)" in loose.stderr
    nokey = run_tool("flash.py", "--board", "unix", "--dry-run", "--dps", "--dps-ca", ca.cert_file,
                     "--registration-id", "mcu-0a1b", env=env)
    assert nokey.returncode == 2 and "$MICROAGENT_DPS_CA_KEY" in nokey.stderr
    other = FactoryCa(str(tmp_path / "factory"), "other-ca")
    mismatched = run_tool("flash.py", "--board", "unix", "--dry-run", "--dps", "--dps-ca", ca.cert_file,
                          "--registration-id", "mcu-0a1b",
                          env=dict(env, MICROAGENT_DPS_CA_KEY=other.key_pem.decode()))
    assert mismatched.returncode == 2 and "the CA key is not the CA certificate's key" in mismatched.stderr


def test_a_flashed_board_registers_with_its_own_certificate_and_sends(virtual_board, ca, tmp_path):
    with dps_hub_process(tmp_path / "hub", plain_port=None) as hub:
        scope = add_x509_group(hub.data_dir, "line1", ca.cert_file)
        env = dict(os.environ, MICROAGENT_DPS_GROUP="GlobalEndpoint=127.0.0.1:%d;IdScope=%s"
                   % (hub.state["dps_port"], scope))
        proc = run_tool("flash.py", "--board", "unix", "--port", virtual_board.port, "--json",
                        "--log-seconds", "60", "--dps", "--dps-ca", ca.cert_file, "--dps-ca-key",
                        ca.key_file, "--registration-id", "line1-07", "--ca", hub.ca,
                        "--hub-port", hub.port, env=env, timeout=240)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert wait_for(lambda: hub.messages("line1-07"), 60), hub.log()
        assert hub.db.execute("SELECT registration_id FROM registrations").fetchall() == [("line1-07",)]
        assert hub.key("line1-07") is None   # an X.509 device: no SAS key
    with open(os.path.join(virtual_board.flash, "microagent_cert.der"), "rb") as f:
        cert = x509.load_der_x509_certificate(f.read())
    assert cert.subject.rfc4514_string() == "CN=line1-07" and cert.issuer == ca.cert.subject
    for name in os.listdir(virtual_board.flash):
        path = os.path.join(virtual_board.flash, name)
        if os.path.isfile(path):
            with open(path, "rb") as f:
                data = f.read()
            assert ca.key_der not in data and ca.key_pem not in data, name
