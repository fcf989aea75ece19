# The uplink of `replay_main --credentials`: finished messages go to IoT Hub through a
# HubSession and its bounded outbox. Loaded only when sending, to keep replay's heap small.
import sys

from microagent.config import Config
from microagent.hub import HubSession
from microagent.mqtt import MQTTRefused, pem_to_der, run
from microagent.outbox import Outbox
from microagent.sas import ConnectionString


def _read(path, mode="r"):
    with open(path, mode) as f:
        return f.read()


def _credentials(path):
    # "-": the parent pipes the connection string to stdin, so it never touches the disk.
    return sys.stdin.readline() if path == "-" else _read(path)


class Uplink:
    """Sends each finished message through a HubSession; when the outbox stays full longer
    than WAIT_MS (hub down), the outbox drops its oldest message and counts it."""

    def __init__(self, options):
        cs = ConnectionString(_credentials(options["--credentials"]).strip())
        ca = _read(options["--ca"], "rb")
        ca_der = pem_to_der(ca) if b"-----BEGIN" in ca else ca
        outbox = Outbox(int(options["--outbox-messages"]), int(options["--outbox-bytes"]))
        self.session = HubSession(cs, outbox, Config(), ca_der=ca_der,
                                  port=int(options["--port"]), log=_info)
        self.wait_ms = int(options["--wait-ms"])
        try:
            run(self.session.connect())
        except MQTTRefused as exc:
            # Bad credentials do not get better with retries: stop before replaying anything.
            raise ValueError("the hub %s" % exc)
        except OSError as exc:
            _info("hub: %s; will retry" % exc)

    def send(self, buffer, length):
        data = memoryview(buffer)[:length]
        if run(self.session.send_when_room(data, self.wait_ms)) < 0:
            self.session.send(bytes(data))

    def finish(self):
        delivered = run(self.session.flush(self.wait_ms * 4))
        stats = self.session.outbox.stats()
        _info("delivered %d messages; %d queued, %d dropped from the full outbox (and %d more "
              "after sending, unacknowledged), %d too large"
              % (stats["delivered"], stats["queued"], stats["dropped"], stats["unconfirmed"],
                 stats["too_large"]))
        self.session.close()
        return (delivered and not stats["dropped"] and not stats["unconfirmed"]
                and not stats["too_large"])


def _info(text):
    sys.stderr.write("info: %s\n" % text)
