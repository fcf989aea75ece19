"""Tests that need root say so: `make test` runs as root and refuses to start otherwise; run by
hand without root, such a test is skipped with a one-line reason starting "needs root: " (shown
by -ra, and counted in one summary line), so the precondition is visible, never silent."""
import os
import re

import pytest

NEEDS_ROOT = "needs root: "


def kernel_version():
    return tuple(int(part) for part in re.match(r"(\d+)\.(\d+)", os.uname().release).groups())


def root_reason(reason, before_kernel=None):
    """The skip reason when this test cannot run here, else None. BEFORE_KERNEL (major, minor):
    root is needed only on kernels older than that."""
    if os.geteuid() == 0 or (before_kernel is not None and kernel_version() >= tuple(before_kernel)):
        return None
    return NEEDS_ROOT + reason


def skip_unless_root(reason, before_kernel=None):
    """For fixtures: skips the test that uses them when not root."""
    why = root_reason(reason, before_kernel)
    if why:
        pytest.skip(why)
