"""A real mosquitto broker for tests and benchmarks: TLS listener (and optionally a plain one),
password file, free ports. mosquitto is the "bring your own broker" target (Debian package).

Certificates are made with `cryptography`: a CA, and a server certificate for 127.0.0.1 and
localhost signed by it. A second, unrelated CA lets tests check that verification really fails.
"""
import datetime
import ipaddress
import os
import socket
import subprocess
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from free_port import free_port


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_ca(common_name):
    """Returns (certificate, key) of a self-signed CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(_name(common_name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def make_server_cert(ca_cert, ca_key):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name("localhost")).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert, key


def write_certs(directory):
    """Writes ca.pem, server.pem, server.key and other-ca.pem (unrelated CA); returns their paths."""
    ca_cert, ca_key = make_ca("microagent test CA")
    server_cert, server_key = make_server_cert(ca_cert, ca_key)
    other_ca, _ = make_ca("some other CA")
    paths = {}
    for name, data in (("ca.pem", ca_cert.public_bytes(serialization.Encoding.PEM)),
                       ("server.pem", server_cert.public_bytes(serialization.Encoding.PEM)),
                       ("server.key", _pem_key(server_key)),
                       ("other-ca.pem", other_ca.public_bytes(serialization.Encoding.PEM))):
        path = os.path.join(directory, name)
        secret = name.endswith(".key")   # 0600 from its creation, whatever the umask
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644),
                       "wb") as f:
            f.write(data)
        paths[name] = path
    return paths


class Mosquitto:
    """mosquitto with one TLS listener and a password file; start()/stop() may repeat (same port).
    With PLAIN, a second listener without TLS on .plain_port (same password file)."""

    def __init__(self, directory, users, plain=False):
        self.dir = directory
        self.certs = write_certs(directory)
        self.port = free_port()
        self.plain_port = free_port() if plain else None
        self.passwd = os.path.join(directory, "passwd")
        open(self.passwd, "w").close()
        for user, password in users.items():
            subprocess.run(["mosquitto_passwd", "-b", self.passwd, user, password], check=True,
                           capture_output=True)
        os.chmod(self.passwd, 0o600)
        self.conf = os.path.join(directory, "mosquitto.conf")
        with open(self.conf, "w") as f:
            # Run as root, mosquitto would switch to the `mosquitto` user, which cannot read
            # the test's temporary files; stay the user who started it.
            if os.geteuid() == 0:
                f.write("user root\n")
            f.write("per_listener_settings false\n"
                    "allow_anonymous false\n"
                    "password_file %s\n"
                    "persistence true\n"
                    "persistence_location %s/\n"
                    "log_dest stderr\n"
                    "log_type all\n"
                    "listener %d 127.0.0.1\n"
                    "cafile %s\ncertfile %s\nkeyfile %s\n"
                    % (self.passwd, directory, self.port, self.certs["ca.pem"],
                       self.certs["server.pem"], self.certs["server.key"]))
            if self.plain_port:
                f.write("listener %d 127.0.0.1\n" % self.plain_port)
        self.proc = None
        self.log_path = os.path.join(directory, "mosquitto.log")

    def start(self, timeout=10):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(["mosquitto", "-c", self.conf], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("mosquitto exited %s:\n%s" % (self.proc.returncode, self.log()))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("mosquitto did not listen on port %d:\n%s" % (self.port, self.log()))

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-4000:]
        except OSError:
            return ""
