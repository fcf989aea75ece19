import json
import os
import platform
import subprocess

from collector_fixtures import fixture_path
from host_sim.collectors import rootfs, sysinfo


def test_fixture_tree_with_dmi_pci_usb_wifi_modem_and_vlans():
    (item,) = sysinfo.collect(fixture_path("sysinfo_tree"))
    assert {k: v for k, v in item.items() if k != "nics"} == {
        "hardware_vendor": "Advantech", "hardware_model": "UNO-2271G",
        "os_dist": "Debian GNU/Linux", "os_version": "12 (bookworm)",
        "os_platform": "Linux", "os_arch": "aarch64"}
    assert item["nics"] == [
        {"type": "ETH", "vlans": [100, 200], "vendor": "Intel Corporation",
         "info": {"ipv4_address": "192.168.1.23", "ipv6_address": "2001:db8::17",
                  "mac": "00:1b:21:aa:bb:cc"}},
        {"type": "WIFI", "vlans": [], "vendor": "Realtek Semiconductor Corp.",
         "info": {"ipv4_address": "10.10.3.44", "ipv6_address": "fe80::76da:38ff:fe11:2233",
                  "mac": "74:da:38:11:22:33"}},
        {"type": "MOBILE", "vlans": [], "vendor": "",           # id not in the database
         "info": {"ipv4_address": "", "ipv6_address": "", "mac": ""}},
    ]


def test_board_without_dmi_uses_the_device_tree():
    (item,) = sysinfo.collect(fixture_path("sysinfo_board"))
    assert (item["hardware_vendor"], item["hardware_model"]) == \
        ("raspberrypi", "Raspberry Pi 4 Model B Rev 1.4")
    assert (item["os_dist"], item["os_version"], item["os_arch"]) == \
        ("Raspbian GNU/Linux", "11", "armv7l")
    assert item["nics"] == []


def test_empty_root_gives_empty_fields(tmp_path):
    (item,) = sysinfo.collect(str(tmp_path))
    assert item == {"hardware_vendor": "", "hardware_model": "", "os_dist": "", "os_version": "",
                    "os_platform": "", "os_arch": "", "nics": []}


def test_live_matches_os_release_and_the_kernel():
    (item,) = sysinfo.collect("/")
    release = rootfs.read_key_values("/", "/etc/os-release")
    assert item["os_dist"] == release["NAME"]
    assert item["os_version"] == release.get("VERSION", release.get("VERSION_ID"))
    assert (item["os_platform"], item["os_arch"]) == (platform.system(), platform.machine())


def test_live_nics_match_iproute2():
    """Every NIC's MAC, IPv4 and IPv6 address as `ip -j addr` (netlink) reports them."""
    links = {entry["ifname"]: entry for entry in
             json.loads(subprocess.run(["ip", "-j", "addr"], capture_output=True, check=True,
                                       text=True).stdout)}
    (item,) = sysinfo.collect("/")
    physical = [name for name in links if os.path.exists("/sys/class/net/%s/device" % name)]
    assert len(item["nics"]) == len(physical) >= 1
    for nic in item["nics"]:
        name = next(n for n in physical if links[n].get("address") == nic["info"]["mac"])
        ipv4 = [a["local"] for a in links[name]["addr_info"] if a["family"] == "inet"]
        ipv6 = [a["local"] for a in links[name]["addr_info"] if a["family"] == "inet6"]
        assert nic["info"]["ipv4_address"] == (ipv4[0] if ipv4 else "")
        assert nic["info"]["ipv6_address"] in (ipv6 or [""])
        assert nic["type"] in ("ETH", "WIFI", "MOBILE", "UNKNOWN")
