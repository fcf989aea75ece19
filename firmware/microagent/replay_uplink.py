# The uplink of `replay_main --credentials`: finished messages go to IoT Hub through a
# HubSession and its bounded outbox. Loaded only when sending, to keep replay's heap small.
import sys

from microagent.config import Config
from microagent.hub import HubSession
from microagent.mqtt import MQTTError, MQTTRefused, TLSError, pem_to_der, run
from microagent.outbox import Outbox
from microagent.sas import ConnectionString


def _read(path, mode="r"):
    with open(path, mode) as f:
        return f.read()


def _der(data):
    """DER of the first PEM block in DATA (a certificate or a private key), or DATA itself."""
    begin = data.find(b"-----BEGIN ")
    if begin < 0:
        return data
    start = data.find(b"-----", begin + 11) + 5
    end = data.find(b"-----END ", start)
    if start < 5 or end < 0:
        raise ValueError("a PEM block without its END line")
    from binascii import a2b_base64
    return a2b_base64(data[start:end].replace(b"\r", b"").replace(b"\n", b""))


def _credentials(path):
    # "-": the parent pipes the connection string to stdin, so it never touches the disk.
    return sys.stdin.readline() if path == "-" else _read(path)


class Uplink:
    """Sends each finished message through a HubSession; when the outbox stays full longer
    than WAIT_MS (hub down), the outbox drops its oldest message and counts it."""

    def __init__(self, options):
        ca = _read(options["--ca"], "rb")
        ca_der = pem_to_der(ca) if b"-----BEGIN" in ca else ca
        client_cert = None
        if options["--cert"]:  # MicroPython's load_cert_chain takes DER
            client_cert = (_der(_read(options["--cert"], "rb")), _der(_read(options["--key"], "rb")))
        if options["--dps"]:
            cs = _provisioned(options, ca_der, client_cert)
        else:
            cs = ConnectionString(_credentials(options["--credentials"]).strip())
        outbox = Outbox(int(options["--outbox-messages"]), int(options["--outbox-bytes"]))
        self.session = HubSession(cs, outbox, Config(), ca_der=ca_der,
                                  port=int(options["--port"]), log=_info, client_cert=client_cert)
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


def _provisioned(options, ca_der, client_cert):
    """The ConnectionString of the DPS assignment: given (--dps-hub, --dps-device) or
    registered now (an X.509 device presenting CLIENT_CERT, its CertFile and KeyFile as --cert
    and --key) and reported on stderr as `info: dps-assignment {json}` for the caller's
    cache. The DPS client is dropped afterwards: none of it stays in the agent's heap."""
    from microagent import dps
    try:
        settings = dps.DpsSettings(_credentials(options["--dps"]))
        if options["--dps-hub"] and options["--dps-device"]:
            assigned = (options["--dps-hub"], options["--dps-device"])
        else:
            assigned = run(dps.provision(settings, ca_der, client_cert=client_cert))
            _info("dps-assignment " + dps.cache_text(settings, assigned[0], assigned[1]))
        cs = ConnectionString(dps.connection_string(settings, assigned[0], assigned[1]))
    except (dps.DpsError, MQTTError, TLSError) as exc:
        raise ValueError(str(exc))
    finally:
        _forget("microagent.dps")
    return cs


def _forget(name):
    # Unloads a module imported for one job, so the collector can take it back.
    sys.modules.pop(name, None)
    package, _, attribute = name.rpartition(".")
    try:
        delattr(sys.modules[package], attribute)
    except (AttributeError, KeyError, TypeError):
        pass


def _info(text):
    sys.stderr.write("info: %s\n" % text)
