"""A paho subscriber for tests: collects every message on a topic filter, with its exact bytes."""
import queue

import paho.mqtt.client as paho


class Subscriber:
    def __init__(self, port, ca_file, user, password, topic, client_id="test-subscriber",
                 clean_session=True):
        self.topic = topic
        self.messages = queue.Queue()
        self._ready = queue.Queue()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=paho.MQTTv311, clean_session=clean_session)
        self.client.username_pw_set(user, password)
        self.client.tls_set(ca_certs=ca_file)
        self.client.reconnect_delay_set(min_delay=0.2, max_delay=1)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *args: self._ready.put(True)
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, bytes(m.payload)))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self._ready.get(timeout=10)

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if not reason_code.is_failure:
            client.subscribe(self.topic, qos=1)

    def get(self, timeout=10):
        return self.messages.get(timeout=timeout)

    def drain(self, count, timeout=20):
        """COUNT messages, or fewer if TIMEOUT seconds pass without one."""
        got = []
        while len(got) < count:
            try:
                got.append(self.messages.get(timeout=timeout))
            except queue.Empty:
                break
        return got

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()
