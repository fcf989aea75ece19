import shutil

import pytest

from collector_fixtures import fixture_path


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
