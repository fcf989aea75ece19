import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dps_helpers import Pki, add_group, add_x509_group, dps_hub_process  # noqa: E402
from hub_emulator.process import HubProcess  # noqa: E402
from test_azure_sdk import azure_python  # noqa: E402,F401 (a fixture, for the DPS interop tests too)


@pytest.fixture
def hub(tmp_path):
    """A running emulator (TLS and plain TCP on free ports) with device `dev1` registered."""
    process = HubProcess(tmp_path / "hub")
    process.add_device("dev1")
    with process:
        yield process


@pytest.fixture
def pki(tmp_path):
    """CAs A and B and device certificates (dps_helpers.Pki) in a folder of the test's own."""
    folder = tmp_path / "pki"
    folder.mkdir()
    return Pki(str(folder))


@pytest.fixture
def dps_hub(tmp_path):
    """A running hub named localhost with DPS (dps_helpers.dps_hub_process), on free ports."""
    with dps_hub_process(tmp_path / "hub") as process:
        yield process


@pytest.fixture
def dps_hub_8883(tmp_path, private_network):
    """As dps_hub, on the port the Azure SDK always uses, in a network namespace of the test's own:
    the hub on 127.0.0.1:8883 (TLS only), its DPS on [::1]:8883."""
    with dps_hub_process(tmp_path / "hub", port=8883, plain_port=None, dps_port=8883,
                         dps_host="::1") as process:
        yield process


@pytest.fixture
def group_hub(dps_hub):
    """dps_hub with a symmetric key enrollment group: its IdScope and key in .scope and .group_key."""
    dps_hub.scope, dps_hub.group_key = add_group(dps_hub.data_dir, "fleet")
    return dps_hub


@pytest.fixture
def x509_hub(dps_hub, pki):
    """dps_hub with an X.509 enrollment group of CA A: its IdScope in .scope."""
    dps_hub.scope = add_x509_group(dps_hub.data_dir, "cameras", pki.path("ca-a"))
    return dps_hub
