# SystemInformation and SBoM on a board (microagent.collectors.sysinfo, .sbom), against this
# runtime and real files. Runs on CPython and MicroPython; neither has a `network` module here,
# so the NIC list is empty rather than an error.
import os
import sys

from microagent import VERSION
from microagent.collectors import sbom, sysinfo

SYSINFO_FIELDS = ("hardware_vendor", "hardware_model", "os_dist", "os_version", "os_platform",
                  "os_arch", "nics")


def _scratch():
    path = "/tmp/mp_sbom_%d" % (os.urandom(1)[0] << 8 | os.urandom(1)[0])
    os.mkdir(path)
    return path


def _remove(path):
    for name in os.listdir(path):
        full = path + "/" + name
        try:
            os.remove(full)
        except OSError:
            _remove(full)
    os.rmdir(path)


def test_sysinfo_has_every_field_and_no_nics_without_a_network_module():
    items = sysinfo.collect()
    assert len(items) == 1
    item = items[0]
    assert sorted(item) == sorted(SYSINFO_FIELDS)
    assert item["nics"] == []
    assert item["os_dist"].startswith(sys.implementation.name)
    assert sys.platform in item["os_platform"]
    for field in SYSINFO_FIELDS[:-1]:
        assert isinstance(item[field], str)
    assert sysinfo.board_address(items) is None
    if sys.implementation.name == "micropython":
        assert item["os_arch"] in ("x64", "x86", "armv6", "armv7m", "")


def test_sbom_lists_firmware_agent_and_lib_packages_with_versions():
    lib = _scratch()
    try:
        os.mkdir(lib + "/withjson")
        with open(lib + "/withjson/package.json", "w") as f:
            f.write('{"version": "0.9.1", "urls": []}')
        os.mkdir(lib + "/withinit")
        with open(lib + "/withinit/__init__.py", "w") as f:
            f.write('"""doc"""\n__version__ = "2.0"\n')
        with open(lib + "/single.py", "w") as f:
            f.write('__version__ = \'1.4\'\nx = 1\n')
        with open(lib + "/compiled.mpy", "wb") as f:
            f.write(b"M\x06\x00\x1f")
        items = sbom.collect((lib + "/missing", lib))
    finally:
        _remove(lib)
    names = [(i["name"], i["version"]) for i in items]
    assert names[1] == ("microagent", VERSION)
    assert names[0][0] == sys.implementation.name + "-" + sys.platform
    assert sorted(names[2:]) == [("compiled", ""), ("single", "1.4"), ("withinit", "2.0"),
                                 ("withjson", "0.9.1")]


def test_sbom_without_a_lib_folder_is_the_firmware_and_the_agent():
    assert len(sbom.collect(("/nonexistent-lib-folder",))) == 2
