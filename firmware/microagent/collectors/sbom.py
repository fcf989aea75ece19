# SBoM on a board (docs/spec.md section 5): the firmware itself, the agent, and the packages installed
# under /lib (by mip or mpremote mip). A package's version comes from its metadata when it has
# some: a `__version__` line in the module or package __init__, or the "version" of a
# package.json next to it; otherwise it is reported with an empty version.
import os
import sys

from microagent import VERSION

LIB_DIRS = ("/lib",)  # the board profile's fs_root + "/lib"
_VERSION_PREFIX = "__version__"


def _is_dir(path):
    try:
        return os.stat(path)[0] & 0x4000 != 0
    except OSError:
        return False


def _version_line(path):
    # The value of a `__version__ = "x"` line in the first 64 lines of PATH, or "".
    try:
        with open(path) as f:
            for _ in range(64):
                line = f.readline()
                if not line:
                    break
                if line.startswith(_VERSION_PREFIX):
                    value = line.split("=", 1)[1].strip() if "=" in line else ""
                    return value.strip("'\"")
    except (OSError, UnicodeError, ValueError):
        pass
    return ""


def _package_json_version(path):
    try:
        import json
        with open(path) as f:
            data = json.load(f)
        version = data.get("version", "") if isinstance(data, dict) else ""
        return version if isinstance(version, str) else ""
    except (OSError, ValueError):
        return ""


def _package_version(lib, name):
    base = lib + "/" + name
    if _is_dir(base):
        version = _package_json_version(base + "/package.json")
        return version or _version_line(base + "/__init__.py")
    return _version_line(base) if name.endswith(".py") else ""


def packages(lib_dirs=LIB_DIRS):
    """[(name, version)] of the modules and packages in the first of LIB_DIRS that exists."""
    for lib in lib_dirs:
        try:
            names = sorted(os.listdir(lib))
        except OSError:
            continue
        found = []
        for name in names:
            if name.startswith(".") or name == "__pycache__":
                continue
            module = name
            for suffix in (".py", ".mpy"):
                if name.endswith(suffix):
                    module = name[:-len(suffix)]
            found.append((module, _package_version(lib, name)))
        return found
    return []


def collect(lib_dirs=LIB_DIRS):
    """SBoM items: the MicroPython firmware, the agent, then each package under /lib."""
    impl = sys.implementation
    firmware = "%s-%s" % (impl.name, sys.platform)
    items = [{"name": firmware, "version": ".".join(str(p) for p in impl.version[:3]),
              "vendor": getattr(impl, "_machine", "")},
             {"name": "microagent", "version": VERSION, "vendor": "microagent"}]
    for name, version in packages(lib_dirs):
        items.append({"name": name, "version": version, "vendor": ""})
    return items
