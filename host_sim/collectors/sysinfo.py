"""SystemInformation collector (trigger-based): hardware, operating system and network interfaces.

    collect(root="/") -> [payload item]     (one item, fields of docs/spec.md section 5)

Sources, all read through `root`:
  hardware_vendor / hardware_model  /sys/class/dmi/id/{sys_vendor,product_name} (PCs, VMs);
                                    else the device tree (/proc/device-tree/model, and the
                                    vendor prefix of .../compatible) on ARM boards
  os_dist / os_version              /etc/os-release NAME and VERSION (else VERSION_ID)
  os_platform / os_arch             /proc/sys/kernel/ostype and /proc/sys/kernel/arch
                                    (uname's sysname and machine)
  nics                              /sys/class/net: every interface backed by a device (not
                                    loopback or purely virtual ones); type ETH / WIFI (has a
                                    wireless/ or phy80211/ entry) / MOBILE (DEVTYPE=wwan, or a
                                    raw-IP/PPP link) / UNKNOWN; vendor from the PCI or USB id
                                    database (pci.ids / usb.ids) when installed; vlans from
                                    /proc/net/vlan/config (list of VLAN ids on the interface);
                                    info.mac from address, info.ipv4_address from
                                    /proc/net/fib_trie + /proc/net/route, info.ipv6_address from
                                    /proc/net/if_inet6 (global scope preferred).
A missing source gives an empty string, never an exception.
"""
import os
import socket
import struct

from host_sim.collectors import rootfs

ARPHRD_ETHER = 1
ARPHRD_PPP = 512
ARPHRD_RAWIP = 519
ARPHRD_NONE = 0xFFFE
PCI_IDS = ("/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids", "/usr/share/pci.ids")
USB_IDS = ("/usr/share/misc/usb.ids", "/var/lib/usbutils/usb.ids", "/usr/share/hwdata/usb.ids")
EMPTY_MAC = "00:00:00:00:00:00"


def collect(root="/"):
    os_release = read_os_release(root)
    vendor, model = hardware(root)
    return [{
        "hardware_vendor": vendor,
        "hardware_model": model,
        "os_dist": os_release.get("NAME", ""),
        "os_version": os_release.get("VERSION") or os_release.get("VERSION_ID", ""),
        "os_platform": rootfs.read_first_line(root, "/proc/sys/kernel/ostype"),
        "os_arch": rootfs.read_first_line(root, "/proc/sys/kernel/arch") or
                   (os.uname().machine if root == "/" else ""),
        "nics": nics(root),
    }]


def read_os_release(root):
    for name in ("/etc/os-release", "/usr/lib/os-release"):
        try:
            return rootfs.read_key_values(root, name)
        except OSError:
            continue
    return {}


def hardware(root):
    vendor = rootfs.read_first_line(root, "/sys/class/dmi/id/sys_vendor")
    model = rootfs.read_first_line(root, "/sys/class/dmi/id/product_name")
    if vendor or model:
        return vendor, model
    model = rootfs.read_first_line(root, "/proc/device-tree/model").rstrip("\0")
    compatible = rootfs.read_first_line(root, "/proc/device-tree/compatible")
    vendor = compatible.split(",", 1)[0] if "," in compatible else ""
    return vendor, model


# -- network interfaces ------------------------------------------------------------------------
def nics(root):
    net = rootfs.path(root, "/sys/class/net")
    try:
        names = sorted(os.listdir(net))
    except OSError:
        return []
    vlans = read_vlans(root)
    ipv4 = ipv4_addresses(root)
    ipv6 = ipv6_addresses(root)
    result = []
    for name in names:
        base = os.path.join(net, name)
        if not os.path.exists(os.path.join(base, "device")):
            continue                                 # loopback, bridges, tunnels, VLANs
        mac = rootfs.read_first_line(root, "/sys/class/net/%s/address" % name)
        result.append({
            "type": nic_type(root, name),
            "vlans": vlans.get(name, []),
            "vendor": nic_vendor(root, os.path.join(base, "device")),
            "info": {"ipv4_address": ipv4.get(name, ""),
                     "ipv6_address": ipv6.get(name, ""),
                     "mac": "" if mac == EMPTY_MAC else mac},
        })
    return result


def nic_type(root, name):
    base = "/sys/class/net/%s/" % name
    if os.path.exists(rootfs.path(root, base + "wireless")) or \
            os.path.exists(rootfs.path(root, base + "phy80211")):
        return "WIFI"
    try:
        uevent = rootfs.read_key_values(root, base + "uevent")
    except OSError:
        uevent = {}
    arp_type = rootfs.read_first_line(root, base + "type")
    if uevent.get("DEVTYPE") == "wwan" or arp_type in (str(ARPHRD_RAWIP), str(ARPHRD_PPP)):
        return "MOBILE"
    if uevent.get("DEVTYPE") == "wlan":
        return "WIFI"
    if arp_type == str(ARPHRD_ETHER):
        return "ETH"
    return "UNKNOWN"


def nic_vendor(root, device_link):
    """Vendor name of the bus device behind an interface: the nearest directory up from the
    device with a PCI `vendor` or USB `idVendor` id, looked up in pci.ids / usb.ids."""
    directory = os.path.realpath(device_link)
    top = os.path.realpath(rootfs.path(root, "/sys"))
    for _ in range(4):
        if not directory.startswith(top):
            break
        for id_file, databases in (("vendor", PCI_IDS), ("idVendor", USB_IDS)):
            try:
                with open(os.path.join(directory, id_file)) as f:
                    vendor_id = f.read().strip().lower().replace("0x", "")
            except OSError:
                continue
            return lookup_vendor(root, databases, vendor_id)
        directory = os.path.dirname(directory)
    return ""


def lookup_vendor(root, databases, vendor_id):
    """Name for a 4-hex-digit vendor id in the first id database found ("" if none)."""
    for database in databases:
        try:
            with open(rootfs.path(root, database), "rb") as f:
                for raw in f:
                    if raw[:4].decode("ascii", "replace").lower() == vendor_id and raw[4:6] == b"  ":
                        return raw[6:].decode("utf-8", "replace").strip()
        except OSError:
            continue
        return ""
    return ""


def read_vlans(root):
    """{parent interface: [vlan id, ...]} from /proc/net/vlan/config."""
    try:
        text = rootfs.read_text(root, "/proc/net/vlan/config")
    except OSError:
        return {}
    vlans = {}
    for line in text.splitlines():
        fields = [f.strip() for f in line.split("|")]
        if len(fields) == 3 and fields[1].isdigit():
            vlans.setdefault(fields[2], []).append(int(fields[1]))
    return vlans


def ipv4_addresses(root):
    """{interface: first local IPv4 address}: the LOCAL host entries of the main FIB table,
    matched to the interface whose connected route contains them."""
    try:
        routes = rootfs.read_text(root, "/proc/net/route").splitlines()[1:]
        trie = rootfs.read_text(root, "/proc/net/fib_trie").splitlines()
    except OSError:
        return {}
    networks = []
    for line in routes:
        fields = line.split()
        if len(fields) >= 8 and fields[1] != "00000000":
            # The kernel prints the network-order address as a native integer.
            networks.append((int(fields[1], 16), int(fields[7], 16), fields[0]))
    addresses = {}
    previous = ""
    for line in trie:
        stripped = line.strip()
        if stripped == "/32 host LOCAL" and previous:
            value = struct.unpack("=I", socket.inet_aton(previous))[0]
            for dest, mask, iface in networks:
                if value & mask == dest:
                    addresses.setdefault(iface, previous)
                    break
        previous = stripped[4:] if stripped.startswith("|-- ") else ""
    return addresses


def ipv6_addresses(root):
    """{interface: IPv6 address}, a global-scope one when there is one."""
    try:
        lines = rootfs.read_text(root, "/proc/net/if_inet6").splitlines()
    except OSError:
        return {}
    best = {}
    for line in lines:
        fields = line.split()
        if len(fields) != 6:
            continue
        address = socket.inet_ntop(socket.AF_INET6, bytes.fromhex(fields[0]))
        scope = int(fields[3], 16)
        name = fields[5]
        if name not in best or (scope == 0 and best[name][0] != 0):
            best[name] = (scope, address)
    return {name: address for name, (_scope, address) in best.items()}
