"""`microagent demo` shows the sample's aggregated messages readably."""
import os
import subprocess
import sys

MICROAGENT = os.path.join(os.path.dirname(sys.executable), "microagent")


def test_demo_prints_readable_messages_and_the_saving():
    proc = subprocess.run([MICROAGENT, "demo"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "hub emulator listening on 127.0.0.1:" in out
    assert "hub received message 1 of 4 from demo-sensor" in out
    assert "ConnectionCreate (Triggered, Security)" in out
    assert "52.166.2.10:8883" in out and "MQTT" in out
    assert "time.google.com" in out
    assert "537 raw events became 4 messages" in out
