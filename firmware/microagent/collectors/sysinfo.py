# SystemInformation on a board (docs/spec.md section 5): what the firmware knows about itself, from
# os.uname(), sys.implementation, machine.unique_id() and the `network` interfaces present.
# A module or call a port lacks leaves its field empty (the message schema requires the
# top-level fields) or absent (inside a NIC), never an error. Runs once per SystemInformation
# window, so it may allocate.
import sys

# sys.implementation._mpy arch numbers (py/persistentcode.h) -> name, for os_arch.
_ARCHES = ("", "x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp", "armv7emdp",
           "xtensa", "xtensawin", "rv32imc", "rv64imc")


def _uname():
    try:
        import os
        u = os.uname()
        return u.sysname, u.release, u.machine
    except (ImportError, AttributeError):
        return "", "", ""


def _unique_id():
    try:
        import machine
        raw = machine.unique_id()
    except (ImportError, AttributeError, OSError):
        return ""
    return ":".join("%02x" % b for b in raw)


def _arch():
    word = getattr(sys.implementation, "_mpy", None)
    if word is None:
        return ""
    arch = (word >> 10) & 0x3F
    return _ARCHES[arch] if arch < len(_ARCHES) else "arch%d" % arch


def _mac(raw):
    return ":".join("%02x" % b for b in raw)


def _nic(kind, interface):
    # One NIC item for a network.WLAN/LAN interface; fields it cannot tell are left out.
    info = {}
    try:
        if interface.active():
            info["ipv4_address"] = interface.ifconfig()[0]
    except (AttributeError, OSError):
        pass
    try:
        info["mac"] = _mac(interface.config("mac"))
    except (AttributeError, OSError, ValueError):
        pass
    return {"type": kind, "info": info}


def nics(network_module=None):
    """WLAN interfaces as WIFI, LAN as ETH; [] when the port has no `network` module."""
    network = network_module
    if network is None:
        try:
            import network
        except ImportError:
            return []
    found = []
    wlan = getattr(network, "WLAN", None)
    if wlan is not None:
        for mode in ("STA_IF", "AP_IF"):
            if hasattr(network, mode):
                try:
                    interface = wlan(getattr(network, mode))
                except (OSError, ValueError):
                    continue
                if mode == "STA_IF" or interface.active():
                    found.append(_nic("WIFI", interface))
    lan = getattr(network, "LAN", None)
    if lan is not None:
        try:
            found.append(_nic("ETH", lan()))
        except (OSError, ValueError, TypeError):
            pass
    return found


def board_address(items):
    """The first IPv4 address of the NICs in ITEMS (collect()'s result), or None."""
    for nic in items[0]["nics"]:
        address = nic["info"].get("ipv4_address")
        if address and address != "0.0.0.0":
            return address
    return None


def collect(network_module=None):
    """[the one SystemInformation item] of this board."""
    sysname, release, machine = _uname()
    impl = sys.implementation
    version = ".".join(str(part) for part in impl.version[:3])
    model = machine or getattr(impl, "_machine", "")
    serial = _unique_id()
    if serial:
        model = "%s (unique id %s)" % (model, serial)
    return [{
        "hardware_vendor": "",
        "hardware_model": model,
        "os_dist": "%s %s" % (impl.name, version),
        "os_version": release or version,
        "os_platform": sys.platform if not sysname else "%s (%s)" % (sys.platform, sysname),
        "os_arch": _arch(),
        "nics": nics(network_module),
    }]
