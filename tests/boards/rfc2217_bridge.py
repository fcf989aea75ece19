"""An RFC 2217 server (pyserial's PortManager) in front of a serial port, one client at a time:
`python rfc2217_bridge.py PORT` prints its TCP port, then serves rfc2217://127.0.0.1:TCPPORT.
A pty has no modem lines, so those read as idle and writes to them are ignored."""
import socket
import sys
import threading

import serial
import serial.rfc2217


class PtySerial(serial.Serial):
    """A pty as a serial port: RTS/DTR writes are ignored, CTS/DSR/CD read high, RI low."""

    def _update_rts_state(self):
        pass

    def _update_dtr_state(self):
        pass

    cts = dsr = cd = property(lambda self: True)
    ri = property(lambda self: False)


class Bridge:
    def __init__(self, port, client):
        self.serial, self.client, self.lock = port, client, threading.Lock()
        self.manager = serial.rfc2217.PortManager(port, self)

    def write(self, data):  # called by PortManager for its replies, and for the port's output
        with self.lock:
            self.client.sendall(data)

    def to_client(self):
        try:
            while True:
                data = self.serial.read(self.serial.in_waiting or 1)
                if data:
                    self.write(b"".join(self.manager.escape(data)))
        except OSError:
            pass

    def from_client(self):
        while True:
            data = self.client.recv(1024)
            if not data:
                return
            self.serial.write(b"".join(self.manager.filter(data)))


def main():
    port = PtySerial(sys.argv[1], timeout=0.2)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    print(server.getsockname()[1], flush=True)
    while True:
        client, _ = server.accept()
        bridge = Bridge(port, client)
        threading.Thread(target=bridge.to_client, daemon=True).start()
        try:
            bridge.from_client()
        except OSError:
            pass
        client.close()


if __name__ == "__main__":
    main()
