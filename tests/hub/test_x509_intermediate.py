"""Intermediate CAs: a device certificate signed by an intermediate CA that chains to the enrolled
root, presented with the intermediate (leaf + intermediate in one PEM file), connects to the hub
(add-device --x509-ca ROOT) and registers through a DPS X.509 enrollment group of the root, with
paho and with the host agent (replay --dps); the leaf alone, or an intermediate of another root,
is refused. (The firmware engine's MicroPython unix port parses DER only, so its
load_cert_chain holds one certificate: a board needs a certificate signed by the enrolled CA.)"""
import json
import os
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dps_helpers import MICROAGENT, add_x509_group, certificate, dps_env, replay
from test_dps_x509 import register
from test_x509 import connect


def _pem(*certs):
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


class Chain:
    """Roots A (enrolled) and B, an intermediate CA under each, files under FOLDER."""

    def __init__(self, folder):
        self.folder = folder
        self.keys, self.certs = {}, {}
        for root in ("root-a", "root-b"):
            self._make(root, root, ca=True)
            self._make("inter-" + root[-1], root, ca=True)
        self.write("root-a.pem", _pem(self.certs["root-a"]))

    def _make(self, name, issuer, ca):
        key = ec.generate_private_key(ec.SECP256R1())
        self.keys[name] = key
        self.certs[name] = certificate(name, key, issuer, key if issuer == name else self.keys[issuer], ca)

    def write(self, name, data):
        path = os.path.join(self.folder, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def device(self, cn, intermediate="inter-a", with_intermediate=True):
        """(certificate file: leaf [+ intermediate], key file) of a device certificate CN."""
        self._make(cn, intermediate, ca=False)
        chain = [self.certs[cn]] + ([self.certs[intermediate]] if with_intermediate else [])
        key = self.keys[cn].private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption())
        return self.write(cn + ".pem", _pem(*chain)), self.write(cn + ".key", key)


@pytest.fixture
def chain(tmp_path):
    folder = tmp_path / "pki"
    folder.mkdir()
    return Chain(str(folder))


def test_hub_accepts_a_device_certificate_of_an_intermediate_of_the_enrolled_root(dps_hub, chain):
    hub = dps_hub
    for device in ("cam-1", "cam-2", "cam-3"):
        result = subprocess.run([MICROAGENT, "hub", "add-device", "--data", hub.data_dir, device,
                                 "--x509-ca", os.path.join(chain.folder, "root-a.pem")],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
    assert connect(hub, "cam-1", chain.device("cam-1")) == "Success"
    # the leaf without its intermediate does not chain to anything the hub trusts
    assert connect(hub, "cam-2", chain.device("cam-2", with_intermediate=False)) == "refused in TLS"
    assert connect(hub, "cam-3", chain.device("cam-3", intermediate="inter-b")) == "refused in TLS"
    assert [(m["device"], json.loads(m["payload"])) for m in hub.messages()] == [("cam-1", {"x509": 1})]


def test_dps_group_of_the_root_registers_a_device_of_its_intermediate(dps_hub, chain):
    hub = dps_hub
    scope = add_x509_group(hub.data_dir, "cameras", os.path.join(chain.folder, "root-a.pem"))
    status, body = register(hub, scope, "cam-7", chain.device("cam-7"))
    assert status == "Success" and body["registrationState"]["deviceId"] == "cam-7"
    assert register(hub, scope, "cam-8", chain.device("cam-8", intermediate="inter-b")) \
        == ("refused in TLS", None)
    assert [r[0] for r in hub.db.execute("SELECT registration_id FROM registrations")] == ["cam-7"]
    # then at the hub, as an X.509 device of the root
    assert connect(hub, "cam-7", chain.device("cam-7")) == "Success"


def test_host_agent_registers_and_sends_with_an_intermediate_chain(dps_hub, chain, tmp_path):
    hub = dps_hub
    scope = add_x509_group(hub.data_dir, "gateways", os.path.join(chain.folder, "root-a.pem"))
    cert_file, key_file = chain.device("gw-1")
    result = replay(hub, "host", tmp_path / "state" / "outbox.db",
                    dps_env(hub, scope, "gw-1", cert=(cert_file, key_file)))
    assert result.returncode == 0, result.stderr
    assert hub.messages("gw-1")
