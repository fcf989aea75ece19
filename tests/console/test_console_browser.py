"""Real headless Chromium (Debian's) driven by chromedriver against `microagent console` after
replays into the hub emulator. Screenshots are kept in build/test-artifacts/console/."""
import base64
import os
import shutil
import subprocess
import urllib.error
import urllib.request

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from alert_helpers import START, periodic
from hub_replays import ATTACKER, MICROAGENT, QUIET_SAMPLE, REPO, Lines, attacked_trace, replay_to_hub
from hub_emulator import store
from hub_emulator.database import open_db
from hub_emulator.process import HubProcess

ARTIFACTS = os.path.join(REPO, "build", "test-artifacts", "console")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1400,1800")

SYSTEM = {"hardware_vendor": "Raspberry Pi Ltd", "hardware_model": "Raspberry Pi 4 Model B",
          "os_dist": "debian", "os_version": "12", "os_platform": "Linux", "os_arch": "aarch64",
          "nics": [{"type": "ETH", "vlans": [], "vendor": "Broadcom",
                    "info": {"ipv4_address": "192.168.1.20", "ipv6_address": "",
                             "mac": "dc:a6:32:00:00:01"}}]}
FAILURE = {"check_id": "CIS-debian-12-Access-5.2.10", "check_result": "Fail", "error": "",
           "description": "Ensure SSH root login is disabled",
           "remediation": "Set PermitRootLogin no in /etc/ssh/sshd_config", "severity": "High"}
PACKAGES = [{"name": "openssl", "version": "3.0.15-1~deb12u1", "vendor": "Debian"},
            {"name": "openssh-server", "version": "1:9.2p1-2+deb12u3", "vendor": "Debian"}]


def _require(tool):
    if shutil.which(tool) is None:
        pytest.fail("%s is not installed: run `make setup` (Debian packages chromium and "
                    "chromium-driver in tools/system-packages.txt)" % tool)


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    """The console over a hub filled by replays: the attacked device, the quiet sample, and a
    message the consumer cannot read (it must skip it, not fail)."""
    tmp = tmp_path_factory.mktemp("console")
    hub = HubProcess(tmp / "hub", port=0, plain_port=None)
    with hub:
        replay_to_hub(hub, "attacked", attacked_trace(tmp / "attacked.jsonl"), tmp)
        replay_to_hub(hub, "quiet", QUIET_SAMPLE, tmp)
    db = open_db(hub.data_dir)
    # the periodic reports `microagent run` sends (a replay has only window messages)
    for body in (periodic("SystemInformation", [SYSTEM], START + 4 * 3600)
                 + periodic("Baseline", [FAILURE], START + 4 * 3600)
                 + periodic("SBoM", PACKAGES, START + 4 * 3600)):
        store.add(db, "attacked", "devices/attacked/messages/events/",
                  {"$.ct": "application/json"}, body.encode())
    store.add(db, "broken", "devices/broken/messages/events/",
              {"$.ct": "application/json"}, b"[" * 100000)
    proc = subprocess.Popen([MICROAGENT, "console", "--data", hub.data_dir, "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = Lines(proc.stdout).wait_for(lambda text: text.startswith("console: http://"), 30)
        yield line.split()[1]
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    _require("chromium")
    _require("chromedriver")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument("--user-data-dir=%s" % tmp_path_factory.mktemp("chromium-profile"))
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    try:
        yield driver
    finally:
        driver.quit()


def _shot(driver, name):
    """A full-page screenshot (DevTools Page.captureScreenshot beyond the viewport)."""
    os.makedirs(ARTIFACTS, exist_ok=True)
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
    path = os.path.join(ARTIFACTS, name)
    with open(path, "wb") as f:
        f.write(base64.b64decode(shot["data"]))
    return path


def _errors(driver):
    return [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")]


def test_fleet_and_device_pages_in_chromium(console, browser):
    browser.get(console)
    devices = browser.find_element(By.ID, "devices").text
    assert "attacked" in devices and "quiet" in devices and "broken (1 unreadable)" in devices
    fleet_alerts = browser.find_element(By.ID, "alerts").text
    assert "brute-force" in fleet_alerts and ATTACKER in fleet_alerts
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.chart rect")) > 2
    _shot(browser, "fleet.png")
    assert _errors(browser) == []

    browser.find_element(By.LINK_TEXT, "attacked").click()
    assert browser.title == "device attacked"
    connections = browser.find_element(By.ID, "connections").text
    assert "52.166.2.10:8883" in connections and "MQTT" in connections
    assert "216.239.35.0:123" in connections and "time.google.com" in connections
    alerts = browser.find_element(By.ID, "alerts").text
    assert "brute-force" in alerts and "15 failed logins from %s" % ATTACKER in alerts
    logins = browser.find_element(By.ID, "logins").text
    assert logins.count("LoginFailed") == 15
    baseline = browser.find_element(By.ID, "baseline").text
    assert FAILURE["check_id"] in baseline and FAILURE["remediation"] in baseline
    sbom = browser.find_element(By.ID, "sbom").text
    assert "openssh-server 1:9.2p1-2+deb12u3" in sbom
    assert "Raspberry Pi 4 Model B" in browser.find_element(By.ID, "system").text
    processes = browser.find_element(By.ID, "processes").text
    assert "/bin/sh -c /usr/local/bin/poll-sensors" in processes
    _shot(browser, "device-attacked.png")
    assert _errors(browser) == []

    browser.get(console + "?tier=F1&units=2")
    assert "F1 × 2 quota (16,000/day)" in browser.find_element(By.TAG_NAME, "body").text
    _shot(browser, "fleet-f1.png")
    assert _errors(browser) == []


def test_quiet_device_page_has_no_alerts(console, browser):
    browser.get(console + "device?id=quiet")
    assert browser.find_element(By.ID, "alerts").text.splitlines()[-1] == "none"
    _shot(browser, "device-quiet.png")
    assert _errors(browser) == []


def test_console_is_read_only_and_local(console):
    assert console.startswith("http://127.0.0.1:")
    request = urllib.request.Request(console, data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 405
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(console + "device?id=nobody", timeout=10)
    assert missing.value.code == 404
    with urllib.request.urlopen(console, timeout=10) as page:
        html = page.read().decode()
        assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert "<script" not in html and "http://" not in html and "https://" not in html
