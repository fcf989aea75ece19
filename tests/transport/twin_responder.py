"""A paho client that plays the IoT Hub twin service on a plain broker (mosquitto) for tests:
answers twin GETs with a desired document and records reported-property PATCHes."""
import json
import queue
import re
import time

import paho.mqtt.client as paho


class TwinResponder:
    """GET_STATUSES: the statuses the first GETs get answered with (then 200), e.g. [429]."""

    def __init__(self, port, ca_file, user, password, desired, get_statuses=()):
        self.desired = desired
        self.reports = queue.Queue()
        self.gets = queue.Queue()           # (request id, time.monotonic()) of each GET
        self._get_statuses = list(get_statuses)
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="twin-responder")
        self.client.username_pw_set(user, password)
        self.client.tls_set(ca_certs=ca_file)
        self.client.on_message = self._on_message
        self._subscribed = queue.Queue()
        self.client.on_subscribe = lambda *args: self._subscribed.put(True)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe([("$iothub/twin/GET/#", 1), ("$iothub/twin/PATCH/properties/reported/#", 1)])
        self._subscribed.get(timeout=10)

    def _on_message(self, client, userdata, message):
        rid = re.search(r"\$rid=(\d+)", message.topic).group(1)
        if message.topic.startswith("$iothub/twin/GET/"):
            self.gets.put((rid, time.monotonic()))
            if self._get_statuses:
                client.publish("$iothub/twin/res/%d/?$rid=%s" % (self._get_statuses.pop(0), rid),
                               b"", qos=0)
                return
            body = json.dumps({"desired": self.desired, "reported": {}})
            client.publish("$iothub/twin/res/200/?$rid=%s" % rid, body, qos=0)
        else:
            self.reports.put(json.loads(message.payload))
            client.publish("$iothub/twin/res/204/?$rid=%s&$version=2" % rid, b"", qos=0)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()
