# Runs inside the MicroPython unix port: a device that verifies the hub's certificate with the
# emulator's CA (DER), logs in with a SAS token given by the test, and publishes one QoS 1 message.
# argv: PORT CA_DER USERNAME TOKEN SERVER_HOSTNAME
import socket
import ssl
import struct
import sys


def field(s):
    return struct.pack("!H", len(s)) + s


def packet(first, body):
    assert len(body) < 128
    return bytes([first, len(body)]) + body


port, ca_path, username, token, server_hostname = sys.argv[1:6]
with open(ca_path, "rb") as f:
    ca = f.read()
context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
context.verify_mode = ssl.CERT_REQUIRED
context.load_verify_locations(cadata=ca)
sock = socket.socket()
sock.connect(socket.getaddrinfo("127.0.0.1", int(port))[0][-1])
tls = context.wrap_socket(sock, server_hostname=server_hostname)
connect = field(b"MQTT") + bytes([4, 0xC2]) + struct.pack("!H", 60) + field(b"dev1")
connect += field(username.encode()) + field(token.encode())
tls.write(bytes([0x10]) + bytes([len(connect) & 0x7F | 0x80, len(connect) >> 7]) + connect)
print("connack", tls.read(4))
tls.write(packet(0x32, field(b"devices/dev1/messages/events/%24.ct=application%2Fjson") + b"\x00\x07{\"mp\":1}"))
print("puback", tls.read(4))
tls.close()
