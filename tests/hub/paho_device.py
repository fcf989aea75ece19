"""A paho-mqtt 2.x client acting as an IoT Hub device, with blocking helpers for tests."""
import queue
import threading
import time

import paho.mqtt.client as mqtt

TIMEOUT = 10


class PahoDevice:
    def __init__(self, hub, identity="dev1", tls=True, client_id=None, username=None, password=None,
                 keepalive=60):
        self.port = hub.port if tls else hub.plain_port
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or identity,
                                  protocol=mqtt.MQTTv311)
        self.client.username_pw_set(username or hub.username(identity),
                                    password if password is not None else hub.token(identity))
        if tls:
            self.client.tls_set(ca_certs=hub.ca)
        self.client.reconnect_delay_set(min_delay=60, max_delay=60)  # a test sees each disconnect
        self.keepalive = keepalive
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.reason_code = None
        self.received = queue.Queue()
        self.subacks = queue.Queue()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda client, userdata, flags, rc, props: self.disconnected.set()
        self.client.on_message = lambda client, userdata, msg: self.received.put((msg.topic, msg.payload))
        self.client.on_subscribe = lambda client, userdata, mid, codes, props: self.subacks.put(
            [c.value for c in codes])

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.reason_code = reason_code
        self.connected.set()

    def connect(self):
        """Connects and returns the CONNACK's ReasonCode (check .is_failure)."""
        self.client.connect("127.0.0.1", self.port, keepalive=self.keepalive)
        self.client.loop_start()
        assert self.connected.wait(TIMEOUT), "no CONNACK"
        return self.reason_code

    def publish(self, topic, payload, qos=1):
        """Publishes; for QoS 1 waits for the PUBACK. Returns True when acknowledged (or sent, QoS 0)."""
        info = self.client.publish(topic, payload, qos=qos)
        deadline = time.monotonic() + TIMEOUT
        while not info.is_published() and not self.disconnected.is_set() and time.monotonic() < deadline:
            time.sleep(0.005)
        return info.is_published()

    def subscribe(self, *filters):
        self.client.subscribe([(f, 1) for f in filters])
        return self.subacks.get(timeout=TIMEOUT)

    def next_message(self, timeout=TIMEOUT):
        return self.received.get(timeout=timeout)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()
