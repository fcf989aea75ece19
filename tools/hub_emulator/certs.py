"""The emulator's own CA (DIR/ca.pem) and a server certificate for 127.0.0.1, ::1 and localhost
(::1 lets the hub and its DPS both take port 8883 on one machine, as Microsoft's SDK wants).

Created once, on the first `serve`; later runs reuse them so clients keep trusting the same CA.
RSA 2048 keys: every TLS stack the clients use (OpenSSL, mbedTLS in MicroPython) handles them.
"""
import datetime
import hashlib
import _ssl
import ipaddress
import os

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

CA_CERT = "ca.pem"
CA_DER = "ca.der"  # the same CA in DER: MicroPython's load_verify_locations(cadata=...) takes DER
CA_KEY = "ca.key"
SERVER_CERT = "server.pem"
SERVER_KEY = "server.key"


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "microagent"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_private(path, key):
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _write_cert(path, cert):
    with open(path, "wb") as out:
        out.write(cert.public_bytes(serialization.Encoding.PEM))


def _issue(subject, public_key, issuer, issuer_key, days, extensions):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=days))
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                              critical=False))
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(issuer_key, hashes.SHA256())


def ensure(data_dir, hub_name):
    """Creates the CA and server certificate in DATA_DIR unless present; returns (cert, key) paths."""
    server_cert, server_key = os.path.join(data_dir, SERVER_CERT), os.path.join(data_dir, SERVER_KEY)
    if all(os.path.exists(os.path.join(data_dir, name)) for name in (CA_CERT, CA_DER, CA_KEY, SERVER_CERT, SERVER_KEY)):
        return server_cert, server_key
    os.makedirs(data_dir, exist_ok=True)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = _name("microagent hub emulator CA")
    ca = _issue(ca_name, ca_key.public_key(), ca_name, ca_key, 3650, [
        (x509.BasicConstraints(ca=True, path_length=0), True),
        (x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                       data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                       encipher_only=False, decipher_only=False), True)])
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = _issue(_name(hub_name), key.public_key(), ca_name, ca_key, 825, [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                      x509.IPAddress(ipaddress.ip_address("::1")),
                                      x509.DNSName("localhost"), x509.DNSName(hub_name)]), False),
        (x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False)])
    _write_private(os.path.join(data_dir, CA_KEY), ca_key)
    _write_private(server_key, key)
    _write_cert(server_cert, cert)
    with open(os.path.join(data_dir, CA_DER), "wb") as out:
        out.write(ca.public_bytes(serialization.Encoding.DER))
    # ca.pem last: its presence tells a waiting client the whole set is there.
    _write_cert(os.path.join(data_dir, CA_CERT), ca)
    return server_cert, server_key


def peer_chain(ssl_object):
    """The client certificate chain OpenSSL verified in the handshake, as a list of DER: the
    device's certificate first, then any intermediate CA it presented, then the trusted CA it
    chains to. An empty list when the client sent no certificate."""
    if ssl_object is None or ssl_object.getpeercert(binary_form=True) is None:
        return []
    # public from Python 3.13 (DER bytes); 3.11 and 3.12 have it on the _ssl object
    if hasattr(ssl_object, "get_verified_chain"):
        return list(ssl_object.get_verified_chain())
    return [cert.public_bytes(_ssl.ENCODING_DER) for cert in ssl_object._sslobj.get_verified_chain()]


def check_device_cert(chain, device_id, ca_pem=None, thumbprint=None, now=None):
    """None when the client certificate chain CHAIN (peer_chain's list of DER, or a lone DER
    certificate; empty or None when the client sent none) proves DEVICE_ID: its certificate
    signed by CA_PEM, directly or through intermediate CAs of the chain, with CN = the device id,
    or of the SHA-1/SHA-256 THUMBPRINT; and valid now. Otherwise the reason (safe to log)."""
    if isinstance(chain, bytes):
        chain = [chain]
    if not chain:
        return "no client certificate for X.509 device %r" % device_id
    cert_der = chain[0]
    try:
        cert = x509.load_der_x509_certificate(cert_der)
    except ValueError:
        return "client certificate is not X.509 DER"
    now = now or datetime.datetime.now(datetime.timezone.utc)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        return "client certificate is not valid now"
    if thumbprint:
        digests = {hashlib.sha1(cert_der).hexdigest(), hashlib.sha256(cert_der).hexdigest()}
        return None if thumbprint.lower() in digests else "client certificate thumbprint mismatch"
    if not _chains_to(cert, chain[1:], x509.load_pem_x509_certificate(ca_pem.encode()), now):
        return "client certificate is not signed by the CA enrolled for %r" % device_id
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if [n.value for n in names] != [device_id]:
        return "client certificate CN is not the device id %r" % device_id
    return None



def _chains_to(cert, intermediates, ca, now):
    """True when CERT is signed by CA, directly or through INTERMEDIATES (DER, in chain order:
    each a CA valid now that signed the one before it)."""
    for der in intermediates:
        if _issued_by(cert, ca):
            return True
        try:
            issuer = x509.load_der_x509_certificate(der)
        except ValueError:
            return False
        if not (_is_ca(issuer) and issuer.not_valid_before_utc <= now <= issuer.not_valid_after_utc
                and _issued_by(cert, issuer)):
            return False
        cert = issuer
    return _issued_by(cert, ca)


def _issued_by(cert, issuer):
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except (ValueError, TypeError, InvalidSignature):
        return False


def _is_ca(cert):
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


DEVICE_CERT_DAYS = 3650  # a board's certificate lasts its service life; revoke by removing it


class CertificateError(Exception):
    """A CA certificate or key that cannot issue device certificates; one line, no key."""


def load_issuer(ca_pem, ca_key_pem):
    """(CA certificate, CA private key) from PEM bytes; CertificateError unless the key is the
    certificate's and the certificate is a CA."""
    try:
        ca = x509.load_pem_x509_certificate(ca_pem)
    except ValueError:
        raise CertificateError("the CA certificate is not a PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(ca_key_pem, password=None)
    except (ValueError, TypeError):
        raise CertificateError("the CA key is not an unencrypted PEM private key") from None
    if key.public_key().public_numbers() != ca.public_key().public_numbers():
        raise CertificateError("the CA key is not the CA certificate's key")
    if not _is_ca(ca):
        raise CertificateError("the CA certificate is not a CA (basicConstraints CA:TRUE)")
    return ca, key


def issue_device_cert(ca, ca_key, common_name, days=DEVICE_CERT_DAYS):
    """A device certificate CN = COMMON_NAME signed by CA (load_issuer) for a new P-256 key:
    (certificate DER, private key PKCS#8 DER), as MicroPython's load_cert_chain takes them."""
    from cryptography.hazmat.primitives.asymmetric import ec
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _issue(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]),
                  key.public_key(), ca.subject, ca_key, days, [
                      (x509.BasicConstraints(ca=False, path_length=None), True),
                      (x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), False)])
    return (cert.public_bytes(serialization.Encoding.DER),
            key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))
