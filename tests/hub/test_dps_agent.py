"""The agent provisions itself through the emulator's DPS (`replay --dps`, $MICROAGENT_DPS) on
both engines (the firmware one inside MicroPython), caches the assignment beside its outbox and
sends to the assigned hub; a key derived from another group's key is refused in one line."""
import base64
import json
import os
import stat
import subprocess

import pytest

from dps_helpers import MICROAGENT, TRACE, derive, dps_env, replay


@pytest.mark.parametrize("engine", ["host", "firmware"])
def test_device_registers_sends_to_its_hub_and_a_restart_uses_the_cache(group_hub, tmp_path, engine):
    hub = group_hub
    key = derive(hub.group_key, "board-%s" % engine)
    env = dps_env(hub, hub.scope, "board-%s" % engine, key=key)
    outbox = tmp_path / "state" / "outbox.db"
    first = replay(hub, engine, outbox, env)
    assert first.returncode == 0, first.stderr
    stored = hub.messages("board-%s" % engine)
    assert stored and all(json.loads(m["payload"])["AgentId"] for m in stored)
    cache = tmp_path / "state" / "dps-assignment.json"
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o600
    assert json.loads(cache.read_text()) == {
        "GlobalEndpoint": "127.0.0.1:%d" % hub.state["dps_port"], "IdScope": hub.scope,
        "RegistrationId": "board-%s" % engine, "assignedHub": "localhost",
        "deviceId": "board-%s" % engine}
    assert key not in first.stderr + first.stdout + cache.read_text()
    assert hub.log().count("dps: board-%s connected" % engine) == 1
    second = replay(hub, engine, outbox, env)
    assert second.returncode == 0, second.stderr
    assert hub.log().count("dps: board-%s connected" % engine) == 1  # no second registration
    assert len(hub.messages("board-%s" % engine)) > len(stored)


@pytest.mark.parametrize("engine", ["host", "firmware"])
def test_key_of_another_group_is_refused_in_one_line_and_nothing_stored(group_hub, tmp_path, engine):
    hub = group_hub
    stranger = base64.b64encode(os.urandom(64)).decode()
    key = derive(stranger, "rogue-1")
    result = replay(hub, engine, tmp_path / "state" / "outbox.db", dps_env(hub, hub.scope, "rogue-1", key=key))
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "refused registration rogue-1" in line and "not authorized" in line, line
    assert key not in result.stderr and "SharedAccessSignature" not in result.stderr
    assert not (tmp_path / "state" / "dps-assignment.json").exists()
    assert hub.messages() == [] and hub.key("rogue-1") is None


def test_dps_settings_come_from_the_environment_only(dps_hub, tmp_path):
    env = dict(os.environ)
    env.pop("MICROAGENT_DPS", None)
    result = subprocess.run([MICROAGENT, "replay", TRACE, "--dps", "--ca", dps_hub.ca],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--dps needs $MICROAGENT_DPS" in result.stderr
    bad = dict(env, MICROAGENT_DPS="GlobalEndpoint=h;IdScope=s;RegistrationId=r;SymmetricKey=***")
    result = subprocess.run([MICROAGENT, "replay", TRACE, "--dps", "--ca", dps_hub.ca],
                            env=bad, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "$MICROAGENT_DPS: DPS settings: SymmetricKey is not valid base64" in result.stderr


def test_run_provisions_and_sends_its_collectors_messages(group_hub, tmp_path):
    hub = group_hub
    env = dps_env(hub, hub.scope, "gateway-run", key=derive(hub.group_key, "gateway-run"))
    result = subprocess.run([MICROAGENT, "run", "--once", "--seconds", "0.5", "--collectors",
                             "SystemInformation,SBoM", "--dps", "--ca", hub.ca, "--port", str(hub.port),
                             "--outbox", str(tmp_path / "state" / "outbox.db"), "--timeout", "20"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "DPS assigned gateway-run to hub localhost as gateway-run" in result.stderr
    names = {event["Name"] for m in hub.messages("gateway-run")
             for event in json.loads(m["payload"])["Events"]}
    assert names == {"SystemInformation", "SBoM"}
    assert (tmp_path / "state" / "dps-assignment.json").exists()
