import shutil

import pytest

from collector_fixtures import fixture_path
from ipv6_net import add_ula_addresses


@pytest.fixture
def tree(tmp_path):
    """Copies a fixture tree to a temporary directory (tests may change modes or append)."""
    def copy(name):
        target = tmp_path / name
        shutil.copytree(fixture_path(name), target, symlinks=True)
        return str(target)
    return copy


@pytest.fixture
def events():
    """A list that collects what collectors emit."""
    return []


@pytest.fixture
def ula(private_network):
    """The test runs in a network namespace of its own with two unique local IPv6 addresses
    (ipv6_net.ULA_SERVER, ULA_CLIENT) on its loopback."""
    add_ula_addresses()
