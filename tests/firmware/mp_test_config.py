# Configuration keys (microagent.config): defaults, validation per key, twin-style apply.
# Runs on CPython and MicroPython.
from microagent import config
from mp_assert import raises




def test_defaults_follow_the_spec():
    c = config.Config()
    assert c["CollectorsCore_PriorityIntervals"] == "30,120,1440"
    for name in config.COLLECTORS:
        assert c[name + "_Disabled"] is False
    for name in ("Process", "NetworkActivity", "Login"):
        assert c[name + "_MessageFrequency"] == "Medium"
    for name in ("SystemInformation", "Baseline", "SBoM"):
        assert c[name + "_MessageFrequency"] == "Low"
    for key in ("Process_CacheSize", "NetworkActivity_CacheSize", "Login_CacheSize"):
        assert c[key] == 256
    assert c["IothubModule_MessageTimeout"] == 2880
    assert c.message_timeout_s() == 2880 * 60
    assert c.window_ms("Process") == 120 * 60000
    assert c.window_ms("SBoM") == 1440 * 60000
    assert c.enabled("Login")


def test_apply_good_values():
    c = config.Config()
    applied, rejected = c.apply({"$version": 7, "Process_CacheSize": 64, "Login_Disabled": True,
                                 "NetworkActivity_MessageFrequency": "High",
                                 "CollectorsCore_PriorityIntervals": "1, 5,15"})
    assert rejected == {}
    assert applied == {"Process_CacheSize": 64, "Login_Disabled": True,
                       "NetworkActivity_MessageFrequency": "High",
                       "CollectorsCore_PriorityIntervals": "1, 5,15"}
    assert c.window_ms("NetworkActivity") == 60000 and not c.enabled("Login")
    # Applying the same again changes nothing.
    assert c.apply({"Process_CacheSize": 64}) == ({}, {})


def test_bad_values_rejected_old_value_kept():
    c = config.Config()
    c.apply({"Process_CacheSize": 100})
    bad = {
        "Process_CacheSize": 0,
        "NetworkActivity_CacheSize": "256",
        "Login_CacheSize": 2.5,
        "Login_Disabled": "true",
        "SBoM_Disabled": 1,
        "Process_MessageFrequency": "Often",
        "CollectorsCore_PriorityIntervals": "30,120",
        "IothubModule_MessageTimeout": True,
        "Process_Mode": "Magic",
        "NoSuchKey": 1,
    }
    applied, rejected = c.apply(bad)
    assert applied == {}
    assert sorted(rejected) == sorted(bad)
    assert "0 is outside 1..65535" in rejected["Process_CacheSize"]
    assert rejected["NetworkActivity_CacheSize"] == "expected an integer"
    assert rejected["Login_Disabled"] == "expected true or false"
    assert "High, Medium, Low" in rejected["Process_MessageFrequency"]
    assert "three" in rejected["CollectorsCore_PriorityIntervals"]
    assert rejected["NoSuchKey"] == "unknown key"
    assert c["Process_CacheSize"] == 100 and c["Login_Disabled"] is False
    assert c["IothubModule_MessageTimeout"] == 2880


def test_mixed_patch_applies_good_keys_only():
    c = config.Config()
    applied, rejected = c.apply({"Process_CacheSize": 32, "Login_CacheSize": -1})
    assert applied == {"Process_CacheSize": 32} and list(rejected) == ["Login_CacheSize"]
    assert c["Login_CacheSize"] == 256


def test_null_resets_to_default():
    c = config.Config(defaults={"CollectorsCore_PriorityIntervals": "1,2,3"})
    c.apply({"CollectorsCore_PriorityIntervals": "5,6,7"})
    applied, rejected = c.apply({"CollectorsCore_PriorityIntervals": None})
    assert applied == {"CollectorsCore_PriorityIntervals": "1,2,3"} and rejected == {}


def test_intervals_parsing():
    assert config.parse_intervals("30,120,1440") == (30, 120, 1440)
    for bad, reason in (("0,1,2", "outside"), ("a,b,c", "not a whole number"),
                        ("1,2,3,4", "three"), ("1,2,99999", "outside"), ("-1,2,3", "not a whole"),
                        ("60,30,1440", "High <= Medium <= Low")):
        assert reason in str(raises(ValueError, config.parse_intervals, bad)), bad


def test_board_defaults_and_maxima():
    c = config.Config(defaults={"NetworkActivity_CacheSize": 64}, maxima={"NetworkActivity_CacheSize": 128})
    assert c["NetworkActivity_CacheSize"] == 64
    applied, rejected = c.apply({"NetworkActivity_CacheSize": 256})
    assert "outside 1..128" in rejected["NetworkActivity_CacheSize"]
    assert "Process_CacheSize" in str(raises(ValueError, config.Config, {"Process_CacheSize": 0}))
    assert "Nope" in str(raises(ValueError, config.Config, None, {"Nope": 5}))
    assert "Process_Mode" in str(raises(ValueError, config.Config, None, {"Process_Mode": 5}))


def test_as_dict_is_a_copy():
    c = config.Config()
    d = c.as_dict()
    d["Process_CacheSize"] = 1
    assert c["Process_CacheSize"] == 256
    assert len(c.keys()) == len(d)
