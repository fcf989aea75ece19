"""The member's librdkafka settings: Event Hubs' documented SASL PLAIN over TLS when the
connection string is in the environment, a plain broker otherwise; and the redaction of the
connection string from whatever librdkafka says."""
from host_sim.cloud.kafka_config import consumer_settings, redactor

KEY = "c2VjcmV0LWtleS1vZi10aGUtdGVzdA=="
SECRET = "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=" + KEY


def test_event_hubs_settings_come_from_the_environment():
    settings = consumer_settings("ns.servicebus.windows.net:9093", "alerts",
                                 {"MICROAGENT_KAFKA_CONNECTION_STRING": SECRET})
    assert {k: settings[k] for k in ("bootstrap.servers", "group.id", "security.protocol",
                                     "sasl.mechanism", "sasl.username", "sasl.password")} == {
        "bootstrap.servers": "ns.servicebus.windows.net:9093", "group.id": "alerts",
        "security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN",
        "sasl.username": "$ConnectionString", "sasl.password": SECRET}
    assert settings["enable.auto.commit"] is False


def test_a_plain_broker_needs_no_credentials():
    settings = consumer_settings("127.0.0.1:9092", "alerts", {})
    assert not any(k.startswith("sasl.") or k == "security.protocol" for k in settings)


def test_the_connection_string_and_its_key_are_blanked_out():
    redact = redactor({"MICROAGENT_KAFKA_CONNECTION_STRING": SECRET})
    assert redact("bad value %s for sasl.password" % SECRET) == "bad value *** for sasl.password"
    assert redact("key %s seen" % KEY) == "key *** seen"
    assert redact("1/1 brokers are down") == "1/1 brokers are down"
    assert redactor({})("anything") == "anything"
