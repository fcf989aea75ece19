import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "hub"))  # raw_mqtt: an independent client
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "tools"))  # board_profiles

from hub_emulator.process import HubProcess  # noqa: E402


@pytest.fixture
def hub(tmp_path):
    """A running emulator (TLS and plain TCP on free ports) with device `dev1` registered."""
    process = HubProcess(tmp_path / "hub")
    process.connection_string = process.add_device("dev1")
    with process:
        yield process
