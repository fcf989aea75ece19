"""The factory flow: flash.py --dps writes a board's DPS enrollment (its registration id and the
key derived on the host; the group key from the environment, never on the board, in a file or on
argv), and the board's boot (microagent.settings) provisions from it through the emulator's DPS
and caches the assignment on its flash."""
import base64
import json
import os
import subprocess
import sys

from dps_helpers import REPO, derive
from microagent import settings as board_settings
from microagent.sas import ConnectionString

sys.path.insert(0, os.path.join(REPO, "tools"))

import board_profiles  # noqa: E402
import flash  # noqa: E402

GROUP_KEY = base64.b64encode(b"g" * 64).decode()


def test_device_file_holds_the_derived_key_and_never_the_group_key():
    group = "GlobalEndpoint=dps.example;IdScope=0ne00000001;SymmetricKey=" + GROUP_KEY
    written = flash.dps_device_file(group, "mcu-0a1b2c", hub_port=8884)
    assert written.secret and written.remote == "microagent_device.json"
    assert GROUP_KEY.encode() not in written.data
    assert json.loads(written.data) == {
        "dps": "GlobalEndpoint=dps.example:8883;IdScope=0ne00000001;RegistrationId=mcu-0a1b2c;"
               "SymmetricKey=" + derive(GROUP_KEY, "mcu-0a1b2c"), "port": 8884}
    assert GROUP_KEY not in written.origin and derive(GROUP_KEY, "mcu-0a1b2c") not in written.origin


def test_dry_run_takes_the_group_from_the_environment_and_shows_no_key():
    env = dict(os.environ, MICROAGENT_DPS_GROUP="GlobalEndpoint=127.0.0.1:8884;IdScope=0ne00000001;"
               "SymmetricKey=" + GROUP_KEY)
    result = subprocess.run([sys.executable, os.path.join(REPO, "tools", "flash.py"), "--board", "unix",
                             "--dry-run", "--json", "--dps", "--registration-id", "board-01"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    text = result.stdout + result.stderr
    assert GROUP_KEY not in text and derive(GROUP_KEY, "board-01") not in text
    plans = [json.loads(line) for line in result.stdout.splitlines() if '"plan"' in line]
    [device] = [p for p in plans if p["path"].endswith("microagent_device.json")]
    assert device["sha256"] is None and "RegistrationId=board-01" in device["origin"]
    env.pop("MICROAGENT_DPS_GROUP")
    missing = subprocess.run([sys.executable, os.path.join(REPO, "tools", "flash.py"), "--board", "unix",
                              "--dry-run", "--dps", "--registration-id", "board-01"],
                             env=env, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "--dps needs $MICROAGENT_DPS_GROUP" in missing.stderr


def test_ten_boards_from_one_group_provision_at_boot_and_reboot_from_the_cache(group_hub, tmp_path,
                                                                                monkeypatch):
    hub = group_hub
    group = "GlobalEndpoint=127.0.0.1:%d;IdScope=%s;SymmetricKey=%s" % (hub.state["dps_port"], hub.scope,
                                                                          hub.group_key)
    profile = board_profiles.load("unix")
    for n in range(10):
        board = tmp_path / ("board-%d" % n)
        board.mkdir()
        monkeypatch.chdir(board)
        (board / "microagent_board.json").write_text(json.dumps(profile))
        written = flash.dps_device_file(group, "line1-%02d" % n, hub_port=hub.port)
        device = dict(json.loads(written.data), ca=hub.ca_der)
        (board / "microagent_device.json").write_text(json.dumps(device))
        log = []
        settings, outbox = board_settings.boot(log.append)
        assert settings is not None, log
        cs = ConnectionString(settings.connection_string)
        assert (cs.host, cs.device_id) == ("localhost", "line1-%02d" % n)
        assert base64.b64encode(cs.key).decode() == hub.key("line1-%02d" % n) == derive(hub.group_key,
                                                                                      "line1-%02d" % n)
        cache = (board / "microagent_dps.json").read_text()
        assert hub.group_key not in cache and derive(hub.group_key, "line1-%02d" % n) not in cache
        assert "microagent.dps" not in sys.modules  # unloaded once provisioned
    assert hub.db.execute("SELECT COUNT(*) FROM registrations").fetchone()[0] == 10
    # a reboot of the last board reads its cache: no second registration
    log = []
    settings, _ = board_settings.boot(log.append)
    assert ConnectionString(settings.connection_string).device_id == "line1-09"
    assert hub.log().count("dps: line1-09 connected") == 1


def test_a_board_of_another_group_does_not_start(group_hub, tmp_path, monkeypatch):
    hub = group_hub
    monkeypatch.chdir(tmp_path)
    other = "GlobalEndpoint=127.0.0.1:%d;IdScope=%s;SymmetricKey=%s" % (hub.state["dps_port"], hub.scope,
                                                                          GROUP_KEY)
    (tmp_path / "microagent_board.json").write_text(json.dumps(board_profiles.load("unix")))
    device = dict(json.loads(flash.dps_device_file(other, "stray-1").data), ca=hub.ca_der)
    (tmp_path / "microagent_device.json").write_text(json.dumps(device))
    log = []
    assert board_settings.boot(log.append) == (None, None)
    [line] = log
    assert "refused registration stray-1" in line and "the agent is not running" in line
    assert not (tmp_path / "microagent_dps.json").exists() and hub.key("stray-1") is None
