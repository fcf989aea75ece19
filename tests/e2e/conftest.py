import os
import sys

import pytest

from hub_emulator.process import HubProcess

MICROAGENT = os.path.join(os.path.dirname(sys.executable), "microagent")


@pytest.fixture
def hub(tmp_path):
    """A running local IoT Hub emulator (TLS on a free port) with device `dev1`."""
    process = HubProcess(tmp_path / "hub", port=0, plain_port=None)
    process.connection_string = process.add_device("dev1")
    with process:
        yield process
