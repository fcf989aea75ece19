# Run inside MicroPython by bench/transport_heap.py: one MQTT session, reporting heap use.
# Usage: micropython transport_heap_probe.py MODE PORT CA_PEM USER PASSWORD [CONNECTION_STRING NOW]
# MODE: plain (MQTT + SAS, no TLS; the baseline), tls (MQTT + SAS over TLS), hub (HubSession:
# SAS, TLS, twin topics, config, outbox), agent (the firmware engine with its replay cache sizes,
# 256 network entries, plus the HubSession). Prints one JSON line of gc.mem_alloc() figures.
import gc
import json
import sys

gc.collect()
stages = [("start", gc.mem_alloc())]


def mark(name):
    gc.collect()
    stages.append((name, gc.mem_alloc()))


mode, port, ca_path, user, password = sys.argv[1:6]
port = int(port)
from microagent import mqtt, sas  # noqa: E402
mark("imports")
with open(ca_path, "rb") as f:
    ca_der = mqtt.pem_to_der(f.read())
token = sas.sas_token("bench.example/devices/dev", b"0123456789abcdef0123456789abcdef", 1800000000)
if mode in ("hub", "agent"):
    if mode == "agent":
        from microagent.engine import build_engine
        engine = build_engine(16, 256, 16, 4096, "00000000-0000-4000-8000-000000000000",
                              lambda buffer, length: None, lambda text: None, "json")
        mark("engine built")
    from microagent import hub
    from microagent.config import Config
    from microagent.outbox import Outbox
    mark("hub imports")
    session = hub.HubSession(sas.ConnectionString(sys.argv[6]), Outbox(4, 2048), Config(),
                             ca_der=ca_der, port=port, buf_size=1024, max_inflight=2,
                             log=lambda line: None, clock_s=lambda: int(sys.argv[7]))
    mark("session built")
    mqtt.run(session.connect())
    mark("connected")
    session.send(b'{"Events": []}')
    ok = mqtt.run(session.flush(10000))
    mark("message acked")
    session.close()
else:
    client = mqtt.MQTTClient("bench-" + mode, user=user, buf_size=1024, max_inflight=2)
    mark("client built")
    sock = mqtt.run(mqtt.open_connection("127.0.0.1", port, ca_der if mode == "tls" else None,
                                         server_hostname="127.0.0.1"))
    mark("socket open")
    mqtt.run(client.connect(sock, password=password, peer="127.0.0.1:%d" % port))
    mark("connected")
    pid = mqtt.run(client.publish("bench/" + mode, token.encode(), qos=1))
    for _ in range(500):
        if not client.pending(pid):
            break
        mqtt.run(client.poll(10))
    ok = not client.pending(pid)
    mark("message acked")
    client.disconnect()
print(json.dumps({"ok": ok, "stages": stages}))
