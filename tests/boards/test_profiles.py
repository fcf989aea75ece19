"""Board profiles: the shipped ones are valid on the host and on the board; bad ones fail with one
line naming the file and the key, on the host (jsonschema) and in MicroPython (profile.py)."""
import copy
import json
import os

import pytest

import board_profiles
from board_helpers import REPO, run_tool
from microagent.profile import ProfileError, check, load_credentials

REQUIRED_BOARDS = {"unix", "esp32", "rp2-pico-w", "stm32", "microbit"}


def _profile(name):
    with open(os.path.join(REPO, "boards", name + ".json")) as f:
        return json.load(f)


def test_required_boards_are_shipped_and_valid():
    assert REQUIRED_BOARDS <= set(board_profiles.names())
    for name in board_profiles.names():
        assert board_profiles.load(name)["name"] == name


def test_board_facts():
    assert _profile("esp32")["mpy"]["arch"] == "xtensawin"
    assert _profile("rp2-pico-w")["mpy"]["arch"] == "armv6m"
    assert _profile("stm32")["mpy"]["arch"] == "armv7emsp"
    assert _profile("stm32")["uplink"] == "ethernet"
    assert _profile("unix")["mpy"]["arch"] is None and _profile("unix")["can_reset"] is False
    microbit = _profile("microbit")
    assert microbit["mpy"] is None and microbit["hashlib"] is False and microbit["uplink"] == "serial"
    assert microbit["heap_bytes"] < 10240 and microbit["runs_agent"] is False


def test_validate_command_lists_every_board():
    proc = run_tool("board_profiles.py")
    assert proc.returncode == 0, proc.stderr
    assert {line.split()[0] for line in proc.stdout.splitlines()} == set(board_profiles.names())


def _set(data, dotted, value):
    *parents, last = dotted.split(".")
    for part in parents:
        data = data[part]
    if value is _DELETE:
        del data[last]
    else:
        data[last] = value


_DELETE = object()
# (key of the esp32 profile, new value, key the error must name, words the error holds)
BAD = [
    ("outbox.max_bytes", _DELETE, "outbox.max_bytes", "missing"),
    ("uplink", _DELETE, "uplink", "missing"),
    ("heap_budget_bytes", "48K", "heap_budget_bytes", "integer"),
    ("heap_budget_bytes", True, "heap_budget_bytes", "integer"),
    ("can_reset", "yes", "can_reset", "boolean"),
    ("collectors", "NetworkActivity", "collectors", "array"),
    ("config.CollectorsCore_PriorityIntervals", "30,x,1440", "config.CollectorsCore_PriorityIntervals", ""),
    ("config.NetworkActivity_CacheSize", "64", "config.NetworkActivity_CacheSize", "integer"),
]
# Rules beyond types: checked by profile.py, which the host loader runs after the schema.
BAD_RULES = [
    ("config.CollectorsCore_PriorityIntervals", "60,15,5", "config.CollectorsCore_PriorityIntervals", "High <= Medium <= Low"),
    ("config.NetworkActivity_CacheSize", 0, "config.NetworkActivity_CacheSize", "collectors lists NetworkActivity"),
    ("heap_budget_bytes", 200000, "heap_budget_bytes", "exceeds heap_bytes"),
    ("max_message_bytes", 65536, "max_message_bytes", "exceeds outbox.max_bytes"),
]


def _mutated(key, value):
    data = copy.deepcopy(_profile("esp32"))
    _set(data, key, value)
    return data


def _write_boards_dir(tmp_path, data, name="esp32"):
    boards = tmp_path / "boards"
    boards.mkdir(exist_ok=True)
    (boards / "schema.json").write_text(open(os.path.join(REPO, "boards", "schema.json")).read())
    (boards / (name + ".json")).write_text(json.dumps(data, indent=2))
    return boards


def _one_line(message, key):
    assert "\n" not in message
    assert "esp32.json" in message and "'%s'" % key in message, message


@pytest.mark.parametrize("key,value,named,words", BAD + BAD_RULES)
def test_host_loader_names_file_and_key(tmp_path, key, value, named, words):
    boards = _write_boards_dir(tmp_path, _mutated(key, value))
    with pytest.raises(ProfileError) as err:
        board_profiles.load("esp32", str(boards))
    _one_line(str(err.value), named)
    assert words in str(err.value)


@pytest.mark.parametrize("key,value,named,words", BAD + BAD_RULES)
def test_board_loader_in_micropython_names_file_and_key(tmp_path, micropython, key, value, named, words):
    """The same bad profile, read by firmware/microagent/profile.py inside the real unix port."""
    path = tmp_path / "microagent_board.json"
    path.write_text(json.dumps(_mutated(key, value)))
    script = tmp_path / "load.py"
    script.write_text("from microagent import config, profile\n"
                      "try:\n    profile.load_profile(%r)\n    print('LOADED')\n"
                      "except profile.ProfileError as e:\n    print('ERROR', e)\n" % str(path))
    out = micropython(str(script)).stdout.strip()
    assert out.startswith("ERROR ") and "microagent_board.json: key '%s'" % named in out, out
    assert words in out


def test_board_loader_accepts_every_shipped_profile_in_micropython(tmp_path, micropython):
    script = tmp_path / "load_all.py"
    names = board_profiles.names()
    script.write_text("from microagent import config, profile\n"
                      "for n in %r:\n    p = profile.load_profile(%r + '/' + n + '.json')\n"
                      "    print(p['name'], config.parse_intervals(p['config']['CollectorsCore_PriorityIntervals']))\n"
                      % (names, os.path.join(REPO, "boards")))
    out = micropython(str(script)).stdout.split("\n")
    assert [line.split()[0] for line in out if line] == names


def test_name_must_match_file(tmp_path):
    data = _mutated("name", "esp32s3")
    with pytest.raises(ProfileError, match=r"esp32.json: key 'name': 'esp32s3' differs"):
        board_profiles.load("esp32", str(_write_boards_dir(tmp_path, data)))


def test_invalid_json_names_the_line(tmp_path):
    boards = _write_boards_dir(tmp_path, _profile("esp32"))
    (boards / "esp32.json").write_text('{\n  "name": "esp32",\n  "port" "esp32"\n}\n')
    with pytest.raises(ProfileError, match=r"esp32.json line 3: not valid JSON"):
        board_profiles.load("esp32", str(boards))


def test_unknown_board_lists_the_known_ones():
    with pytest.raises(ProfileError, match=r"unknown board 'esp8266': choose one of .*esp32.*unix"):
        board_profiles.load("esp8266")


def test_unknown_key_is_rejected_by_schema(tmp_path):
    data = _mutated("heap_kb", 64)
    with pytest.raises(ProfileError, match=r"esp32.json: top level: Additional properties"):
        board_profiles.load("esp32", str(_write_boards_dir(tmp_path, data)))


def test_check_rejects_non_object():
    with pytest.raises(ProfileError, match=r"x.json: expected a JSON object, got array"):
        check([], "x.json")


def test_credentials_errors_never_show_the_value(tmp_path):
    secret = "c2VjcmV0LWtleS1kby1ub3Qtc2hvdw=="
    path = tmp_path / "microagent_device.json"
    path.write_text(json.dumps({"connection_string": ["HostName=h;DeviceId=d;SharedAccessKey=" + secret]}))
    with pytest.raises(ProfileError) as err:
        load_credentials(str(path))
    assert "connection_string" in str(err.value) and secret not in str(err.value)
    path.write_text(json.dumps({"cs": "x"}))
    with pytest.raises(ProfileError, match="key 'connection_string': missing"):
        load_credentials(str(path))
    path.write_text(json.dumps({"connection_string": "HostName=h;DeviceId=d;SharedAccessKey=" + secret}))
    assert load_credentials(str(path)).endswith(secret)
