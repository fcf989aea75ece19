# Run inside MicroPython: connect the firmware MQTT client over TLS and publish one message.
# Usage: micropython mp_publish.py PORT CA_PEM USER PASSWORD TOPIC PAYLOAD_FILE QOS
# (the payload comes from a file: a long argv crashes the unix port under a small heap)
# Prints one JSON line: {"acked": bool, "heap": {...}}; a TLSError or MQTTError is printed as
# {"error": "<class>: <message>"} with exit code 3.
import gc
import json
import sys

from microagent import mqtt

port, ca_path, user, password, topic, payload_path, qos = sys.argv[1:8]
gc.collect()
heap = {"before": gc.mem_alloc()}
with open(ca_path, "rb") as f:
    ca_der = mqtt.pem_to_der(f.read())
with open(payload_path, "rb") as f:
    payload = f.read()
client = mqtt.MQTTClient("fw-" + user, user=user, buf_size=1024, max_inflight=2, timeout_ms=5000)
try:
    sock = mqtt.run(mqtt.open_connection("127.0.0.1", int(port), ca_der,
                                         server_hostname="127.0.0.1"))
    gc.collect()
    heap["tls"] = gc.mem_alloc()
    mqtt.run(client.connect(sock, password=password, peer="127.0.0.1:" + port,
                            server_hostname="127.0.0.1"))
    pid = mqtt.run(client.publish(topic, payload, qos=int(qos)))
    for _ in range(500):
        if not client.pending(pid):
            break
        mqtt.run(client.poll(10))
    acked = not client.pending(pid)
    gc.collect()
    heap["connected"] = gc.mem_alloc()
    client.disconnect()
except (mqtt.TLSError, mqtt.MQTTError) as exc:
    print(json.dumps({"error": "%s: %s" % (type(exc).__name__, exc)}))
    sys.exit(3)
print(json.dumps({"acked": acked, "pid": pid, "heap": heap}))
