"""SBoM collector (trigger-based): installed packages from the dpkg or opkg status database.

    collect(root="/") -> [{"name", "version", "vendor"}]     (docs/spec.md section 5, SBoM)
    installed_packages(root="/") -> [Package]                  (with architecture and source db)

Sources, read through `root`:
  dpkg  /var/lib/dpkg/status: paragraphs whose Status is exactly "install ok installed"
        (half-installed, config-files, half-configured and removed packages are not installed)
  opkg  /usr/lib/opkg/status (OpenWrt) and /var/lib/opkg/status (Yocto): Status
        "<want> <flag> installed" with want install or hold
vendor is the Maintainer field (Debian's convention, as the Defender micro agent reported it).
"""
from host_sim.collectors import rootfs

DPKG_STATUS = "/var/lib/dpkg/status"
OPKG_STATUS = ("/usr/lib/opkg/status", "/var/lib/opkg/status")


class Package:
    __slots__ = ("name", "version", "vendor", "architecture", "manager")

    def __init__(self, name, version, vendor, architecture, manager):
        self.name, self.version, self.vendor = name, version, vendor
        self.architecture, self.manager = architecture, manager

    def item(self):
        return {"name": self.name, "version": self.version, "vendor": self.vendor}


def parse_control(text):
    """Paragraphs of a Debian-control-format file as dicts (continuation lines folded in)."""
    paragraphs = []
    current = {}
    key = None
    for line in text.splitlines():
        if not line.strip():
            if current:
                paragraphs.append(current)
            current, key = {}, None
        elif line[0] in " \t":
            if key is not None:
                current[key] += "\n" + line.strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            key = key.strip()
            current[key] = value.strip()
    if current:
        paragraphs.append(current)
    return paragraphs


def dpkg_installed(status):
    return status == "install ok installed"


def opkg_installed(status):
    words = status.split()
    return len(words) == 3 and words[0] in ("install", "hold") and words[2] == "installed"


def installed_packages(root="/"):
    packages = []
    sources = [(DPKG_STATUS, dpkg_installed, "dpkg")]
    sources += [(name, opkg_installed, "opkg") for name in OPKG_STATUS]
    for name, is_installed, manager in sources:
        try:
            text = rootfs.read_text(root, name)
        except OSError:
            continue
        for p in parse_control(text):
            if "Package" in p and is_installed(p.get("Status", "")):
                packages.append(Package(p["Package"], p.get("Version", ""),
                                        p.get("Maintainer", ""), p.get("Architecture", ""),
                                        manager))
    return packages


def collect(root="/"):
    return [p.item() for p in installed_packages(root)]
