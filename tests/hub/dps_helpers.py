"""Shared by the DPS and X.509 tests: certificates made here, the hub named localhost with DPS,
enrollment groups made with `microagent hub add-enrollment-group`, the documented key derivation
(the tests' oracle), the agent's `replay --dps` with its settings in $MICROAGENT_DPS, and the
Azure SDK's device (azure_sdk_dps_device.py) registering through the DPS."""
import base64
import datetime
import hashlib
import hmac
import json
import os
import subprocess
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hub_emulator.process import HubProcess

MICROAGENT = os.path.join(os.path.dirname(sys.executable), "microagent")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRACE = os.path.join(REPO, "tests", "fixtures", "traces", "quiet-device.jsonl")
AZURE_SDK_DEVICE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "azure_sdk_dps_device.py")


def certificate(subject, key, issuer, issuer_key, ca=False, days=30, start_days=-1):
    """A certificate CN=SUBJECT of KEY signed by ISSUER_KEY (CN=ISSUER), valid from START_DAYS
    to DAYS from now."""
    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    return (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now + datetime.timedelta(days=start_days))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(issuer_key, hashes.SHA256()))


class Pki:
    """Two CAs (A enrolled, B not) and device certificates written as PEM files under ROOT."""

    def __init__(self, root):
        self.root = root
        self.keys = {}
        for ca in ("ca-a", "ca-b"):
            key = ec.generate_private_key(ec.SECP256R1())
            self.keys[ca] = key
            self._write(ca, certificate(ca, key, ca, key, ca=True, days=365), key)

    def _write(self, name, cert, key):
        with open(os.path.join(self.root, name + ".pem"), "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        with open(os.path.join(self.root, name + ".key"), "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        return cert

    def device(self, name, cn, ca="ca-a"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self._write(name, certificate(cn, key, ca, self.keys[ca]), key)
        return os.path.join(self.root, name + ".pem"), os.path.join(self.root, name + ".key"), cert

    def path(self, name):
        return os.path.join(self.root, name + ".pem")


def hub_cli(*args):
    return subprocess.run([MICROAGENT, "hub"] + [str(a) for a in args], capture_output=True, text=True,
                          timeout=30)


def dps_hub_process(data_dir, port=0, plain_port=0, dps_port=0, dps_host=None):
    """A hub (not started) named localhost, its certificate's name and where DPS assignments point,
    with DPS on DPS_PORT (0: a free one)."""
    extra_args = ["--dps-port", str(dps_port)] + (["--dps-host", dps_host] if dps_host else [])
    process = HubProcess(data_dir, port=port, plain_port=plain_port, extra_args=extra_args)
    process.db.execute("UPDATE settings SET value = 'localhost' WHERE name = 'hub_name'")
    return process


def add_group(data_dir, name):
    """(IdScope, group key) of a new symmetric key group, as `hub add-enrollment-group` prints them."""
    result = hub_cli("add-enrollment-group", "--data", data_dir, name)
    assert result.returncode == 0, result.stderr
    fields = dict(part.split("=", 1) for part in result.stdout.strip().split(";"))
    assert set(fields) == {"IdScope", "SymmetricKey"}
    return fields["IdScope"], fields["SymmetricKey"]


def add_x509_group(data_dir, name, ca_file):
    """The IdScope of a new X.509 group of the CA certificate CA_FILE: the only line printed."""
    result = hub_cli("add-enrollment-group", "--data", data_dir, name, "--x509-ca", ca_file)
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    field, _, scope = line.partition("=")
    assert field == "IdScope"
    return scope


def derive(group_key, registration_id):
    """The documented derivation, computed here with the standard library (the oracle)."""
    return base64.b64encode(hmac.new(base64.b64decode(group_key), registration_id.encode(),
                                     hashlib.sha256).digest()).decode()


def dps_endpoint(hub, scope, registration_id):
    """DPS settings up to their credential: the hub's DPS, SCOPE and REGISTRATION_ID."""
    return "GlobalEndpoint=127.0.0.1:%d;IdScope=%s;RegistrationId=%s;" % (hub.state["dps_port"], scope,
                                                                           registration_id)


def dps_settings(hub, scope, registration_id, key=None, cert=None):
    """DPS settings with the symmetric KEY, or CERT = (certificate file, key file)."""
    if key is not None:
        return dps_endpoint(hub, scope, registration_id) + "SymmetricKey=" + key
    return dps_endpoint(hub, scope, registration_id) + "CertFile=%s;KeyFile=%s" % cert


def dps_env(hub, scope, registration_id, key=None, cert=None):
    """This environment with $MICROAGENT_DPS set to dps_settings(...)."""
    return dict(os.environ, MICROAGENT_DPS=dps_settings(hub, scope, registration_id, key, cert))


def replay(hub, engine, outbox, env):
    """`microagent replay --dps` of the quiet device's trace on ENGINE, sending to HUB."""
    return subprocess.run([MICROAGENT, "replay", TRACE, "--engine", engine, "--window", "600",
                           "--dps", "--ca", hub.ca, "--port", str(hub.port), "--outbox", str(outbox),
                           "--timeout", "20"],
                          env=env, capture_output=True, text=True, timeout=300)


def run_sdk(python, hub, scope, registration_id, key=None, cert=None):
    """The steps azure_sdk_dps_device.py prints, run by PYTHON (.venv-azure's) against the DPS on
    [::1]: with the symmetric KEY (on its stdin, never on argv) or CERT = (certificate file, key file)."""
    credential = ["symmetric-key"] if key is not None else ["x509", cert[0], cert[1]]
    result = subprocess.run([python, AZURE_SDK_DEVICE, "::1", scope, registration_id, hub.ca] + credential,
                            input=key + "\n" if key is not None else "",
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]
