"""librdkafka settings of an alerts member, from its options and the environment only.

Event Hubs' Kafka surface (docs/event-hubs.md): BOOTSTRAP is NAMESPACE.servicebus.windows.net:9093,
SASL PLAIN over TLS, user "$ConnectionString", password the namespace's (or event hub's)
connection string, which comes from $MICROAGENT_KAFKA_CONNECTION_STRING and nowhere else. A
plain broker (or librdkafka's mock cluster) needs nothing."""
import os

CONNECTION_STRING_ENV = "MICROAGENT_KAFKA_CONNECTION_STRING"
SESSION_TIMEOUT_MS = 10000   # a member killed outright loses its partitions after this


def consumer_settings(bootstrap, group, environ=os.environ):
    settings = {"bootstrap.servers": bootstrap, "group.id": group,
                "enable.auto.commit": False,          # offsets only after the store commit
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": SESSION_TIMEOUT_MS, "heartbeat.interval.ms": 1000,
                "client.id": "microagent-alerts-%d" % os.getpid(),
                "log_level": 0}                       # errors come through error_cb, one line each
    secret = environ.get(CONNECTION_STRING_ENV)
    if secret:
        settings.update({"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN",
                         "sasl.username": "$ConnectionString", "sasl.password": secret})
    return settings


def redactor(environ=os.environ):
    """A function that blanks the connection string (and its key) out of a line: librdkafka's
    own texts are not ours to trust with it."""
    secret = environ.get(CONNECTION_STRING_ENV) or ""
    pieces = [secret] if secret else []
    for part in secret.split(";"):
        name, sep, value = part.partition("=")
        if sep and name.strip().lower() == "sharedaccesskey" and len(value) >= 8:
            pieces.append(value)    # shorter is no key anyone uses, and would blank out words

    def redact(line):
        for piece in pieces:
            line = line.replace(piece, "***")
        return line
    return redact
