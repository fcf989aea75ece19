"""The cloud side: what a security team runs over what devices send (alert rules, the store they
write, the sources they read — the hub emulator's store, an MQTT broker, Event Hubs' Kafka
surface — and the console). Devices never import it."""
