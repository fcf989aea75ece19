"""Every MicroPython-compatible test module (mp_*.py) runs on CPython, on MicroPython (the 64-bit
unix port) and on micropython32 (our i386 build: 31-bit small ints, 4-byte pointers)."""
import importlib
import os

import pytest

from mp_assert import NotOnThisRuntime

HERE = os.path.dirname(os.path.abspath(__file__))
MODULES = sorted(f[:-3] for f in os.listdir(HERE) if f.startswith("mp_test_") and f.endswith(".py"))


def _cases():
    for name in MODULES:
        module = importlib.import_module(name)
        for attr in sorted(dir(module)):
            if attr.startswith("test_"):
                yield pytest.param(name, attr, id="%s::%s" % (name, attr))


def test_modules_exist():
    assert MODULES, "no MicroPython-compatible test modules found"


@pytest.mark.parametrize("module_name,function", list(_cases()) if MODULES else [])
def test_cpython(module_name, function):
    try:
        getattr(importlib.import_module(module_name), function)()
    except NotOnThisRuntime as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize("module_name", MODULES)
def test_micropython(micropython, module_name):
    proc = micropython(os.path.join(HERE, "mp_runner.py"), [module_name], path=[HERE], heap="2M")
    assert " 0 failed" in proc.stdout


@pytest.mark.parametrize("module_name", MODULES)
def test_micropython32(micropython, firmware_targets, module_name):
    proc = micropython(os.path.join(HERE, "mp_runner.py"), [module_name], path=[HERE], heap="2M",
                       binary=firmware_targets["micropython32"])
    assert " 0 failed" in proc.stdout
