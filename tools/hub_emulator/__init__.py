"""A local Azure IoT Hub emulator: IoT Hub's MQTT device endpoint, its SAS auth, twins, and a message store.

A separate program (`python -m hub_emulator`, `microagent hub`); the agent never imports it.
Tests start it with hub_emulator.process.start_hub() and read what it stored with store.read().
"""
