"""The cloud side's alert rules: a consumer of the messages devices send (read from the hub
emulator's store or an MQTT broker), never a part of the agent."""
