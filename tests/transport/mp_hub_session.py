# Run inside MicroPython: the firmware IoT Hub session (SAS, twin, outbox) against a broker.
# Usage: micropython mp_hub_session.py PORT CA_PEM CONNECTION_STRING UNIX_TIME PAYLOAD_FILE
# UNIX_TIME fixes the clock, so the SAS token is known in advance (mosquitto stores it as the
# password). Prints one JSON line with the outcome.
import json
import sys

from microagent import hub, mqtt
from microagent.clock import sleep_ms
from microagent.config import Config
from microagent.outbox import Outbox
from microagent.sas import ConnectionString

port, ca_path, cs_text, now, payload_path = sys.argv[1:6]
with open(ca_path, "rb") as f:
    ca_der = mqtt.pem_to_der(f.read())
with open(payload_path, "rb") as f:
    payload = f.read()
logs = []
session = hub.HubSession(ConnectionString(cs_text), Outbox(4, 2048), Config(), ca_der=ca_der,
                         port=int(port), buf_size=1024, log=logs.append, clock_s=lambda: int(now))
seq = session.send(payload)
delivered = mqtt.run(session.flush(10000))
for _ in range(300):  # wait for the twin exchange: GET answered, reported PATCH answered
    if session.twin.last_report_status:
        break
    mqtt.run(session.step(poll_ms=10))
    sleep_ms(5)
session.close()
print(json.dumps({"delivered": delivered, "mid": session.message_id(seq),
                  "config": session.config.as_dict(), "twin": session.twin.received,
                  "report_status": session.twin.last_report_status, "logs": logs}))
