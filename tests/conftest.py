import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mpy import run_micropython  # noqa: E402


@pytest.fixture
def micropython():
    """Runs a script inside the real MicroPython unix port; fails on a non-zero exit."""
    return run_micropython
