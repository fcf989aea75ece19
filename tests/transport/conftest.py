import os
import shutil
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools"))

from mosquitto_broker import Mosquitto  # noqa: E402


def _require(tool):
    if shutil.which(tool) is None:
        pytest.fail("%s is not installed: run `make setup` (Debian package in tools/system-packages.txt)"
                    % tool)


@pytest.fixture
def mosquitto_factory(tmp_path):
    """Starts real mosquitto brokers (TLS, password file) for a test; always stops them."""
    _require("mosquitto")
    _require("mosquitto_passwd")
    started = []

    def start(users):
        directory = tmp_path / ("broker%d" % len(started))
        directory.mkdir()
        broker = Mosquitto(str(directory), users)
        started.append(broker)
        return broker.start()

    yield start
    for broker in started:
        broker.stop()
