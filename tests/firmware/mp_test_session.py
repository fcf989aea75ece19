# The IoT Hub session policy (microagent.session) driven by scripted events, no network. Expected
# topics and statuses are IoT Hub's MQTT contract as Microsoft documents it ("Communicate with
# an IoT hub using the MQTT protocol", device twins section):
#   subscribe  $iothub/twin/res/#  and  $iothub/twin/PATCH/properties/desired/#
#   GET        $iothub/twin/GET/?$rid={request id}, answered on $iothub/twin/res/{status}/?$rid=...
#   PATCH      $iothub/twin/PATCH/properties/reported/?$rid={request id}, answered 204 (+ $version)
#   statuses   200 success, 204 success with no content, 400 bad request (malformed),
#              429 too many requests (throttled), 5xx server errors
# and the SAS token contract (SharedAccessSignature sr=...&sig=...&se={expiry}). Backoff figures
# are the scenario's own arithmetic: the wait doubles from the minimum up to the cap.
# Runs on CPython and MicroPython.
import gc
import json

from microagent import session
from microagent.clock import ticks_add
from microagent.config import Config
from microagent.sas import ConnectionString, SasTokenSource

KEY_B64 = "c2VjcmV0LWRldmljZS1rZXktZm9yLXRlc3RzLTAxMjM0NTY3ODk="
CS = ConnectionString("HostName=myhub.azure-devices.net;DeviceId=dev-01;SharedAccessKey=" + KEY_B64)
NOW_S = 1800000000  # a 2027 Unix time: a long int on a 32-bit board


def _policy(ttl_s=3600, renew_s=300, retry_min_ms=1000, retry_max_ms=60000, logs=None):
    tokens = SasTokenSource(CS.resource(), CS.key, ttl_s, renew_s)
    twin = session.Twin(Config(), logs.append if logs is not None else (lambda line: None))
    return session.Session(tokens, twin, retry_min_ms, retry_max_ms)


def _rid(topic):
    prefix, _, rid = topic.partition("?$rid=")
    assert rid.isdigit(), topic
    return prefix, rid


def _ready(policy, now_ms=0, now_s=NOW_S):
    """Drives a fresh connection to the twin GET; returns the GET's request id."""
    assert policy.next_action(now_ms, now_s) == session.CONNECT
    policy.connected()
    assert not policy.ready()
    assert policy.next_action(now_ms, now_s) == session.SUBSCRIBE
    assert policy.next_action(now_ms, now_s) == session.IDLE  # awaiting SUBACK
    policy.subscribed()
    assert policy.ready()
    assert policy.next_action(now_ms, now_s) == session.PUBLISH
    prefix, rid = _rid(policy.topic)
    assert prefix == "$iothub/twin/GET/" and policy.payload == b""
    assert policy.next_action(now_ms, now_s) == session.IDLE
    return rid


def _answer(policy, status, rid, body=b"", now_ms=0, version=None):
    topic = "$iothub/twin/res/%d/?$rid=%s" % (status, rid)
    if version is not None:
        topic += "&$version=%d" % version
    policy.message(topic.encode(), body, now_ms)


def test_connect_subscribes_to_both_twin_topics_then_gets_the_twin():
    policy = _policy()
    assert policy.next_action(0, NOW_S) == session.CONNECT
    password = policy.password
    assert password.startswith("SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdev-01&sig=")
    assert password.endswith("&se=%d" % (NOW_S + 3600))
    assert policy.next_action(0, NOW_S) == session.IDLE  # awaiting CONNACK
    policy.connected()
    assert policy.next_action(0, NOW_S) == session.SUBSCRIBE
    assert sorted(session.TWIN_TOPICS) == sorted(["$iothub/twin/res/#",
                                                   "$iothub/twin/PATCH/properties/desired/#"])
    policy.subscribed()
    assert policy.next_action(0, NOW_S) == session.PUBLISH
    assert policy.topic.startswith("$iothub/twin/GET/?$rid=")


def test_twin_200_applies_desired_and_reports_then_204_settles():
    logs = []
    policy = _policy(logs=logs)
    rid = _ready(policy)
    twin = {"desired": {"Process_CacheSize": 64, "Login_Disabled": "yes", "$version": 3},
            "reported": {"$version": 1}}
    _answer(policy, 200, rid, json.dumps(twin).encode())
    assert policy.twin.received
    assert policy.next_action(1, NOW_S) == session.PUBLISH
    prefix, report_rid = _rid(policy.topic)
    assert prefix == "$iothub/twin/PATCH/properties/reported/" and report_rid != rid
    report = json.loads(policy.payload)
    assert report["config"]["Process_CacheSize"] == 64
    assert list(report["config_rejected"]) == ["Login_Disabled"]
    assert policy.next_action(1, NOW_S) == session.IDLE
    _answer(policy, 204, report_rid, version=2)
    assert policy.twin.last_report_status == 204
    assert policy.next_action(2, NOW_S) == session.IDLE
    assert not any("refused" in line for line in logs)


def test_desired_patch_is_applied_and_reported():
    policy = _policy()
    _ready(policy)
    policy.message(b"$iothub/twin/PATCH/properties/desired/?$version=7",
                   b'{"Process_CacheSize": 32, "$version": 7}', 5)
    assert policy.next_action(5, NOW_S) == session.PUBLISH
    assert policy.topic.startswith("$iothub/twin/PATCH/properties/reported/?$rid=")
    assert json.loads(policy.payload)["config"]["Process_CacheSize"] == 32


def test_twin_get_throttled_429_is_asked_again_after_a_wait():
    logs = []
    policy = _policy(retry_min_ms=1000, retry_max_ms=8000, logs=logs)
    rid = _ready(policy, now_ms=0)
    _answer(policy, 429, rid, now_ms=100)
    assert any("status 429" in line for line in logs)
    assert not policy.twin.received
    assert policy.next_action(1099, NOW_S) == session.IDLE
    assert policy.next_action(1100, NOW_S) == session.PUBLISH
    prefix, again = _rid(policy.topic)
    assert prefix == "$iothub/twin/GET/" and again != rid
    # Throttled again: the wait doubles.
    _answer(policy, 429, again, now_ms=1200)
    assert policy.next_action(3199, NOW_S) == session.IDLE
    assert policy.next_action(3200, NOW_S) == session.PUBLISH
    third = _rid(policy.topic)[1]
    _answer(policy, 200, third, b'{"desired": {"$version": 1}, "reported": {}}', now_ms=3300)
    assert policy.twin.received
    assert policy.next_action(3300, NOW_S) == session.PUBLISH  # the report, no wait
    assert policy.topic.startswith("$iothub/twin/PATCH/properties/reported/")


def test_reported_patch_throttled_or_server_error_is_sent_again_400_is_not():
    policy = _policy(retry_min_ms=500, retry_max_ms=8000)
    _ready(policy)
    policy.message(b"$iothub/twin/PATCH/properties/desired/?$version=2",
                   b'{"Process_CacheSize": 16, "$version": 2}', 0)
    assert policy.next_action(0, NOW_S) == session.PUBLISH
    first_rid, body = _rid(policy.topic)[1], policy.payload
    _answer(policy, 503, first_rid, now_ms=10)
    assert policy.twin.last_report_status == 503
    assert policy.next_action(509, NOW_S) == session.IDLE
    assert policy.next_action(510, NOW_S) == session.PUBLISH
    prefix, second_rid = _rid(policy.topic)
    assert prefix == "$iothub/twin/PATCH/properties/reported/" and second_rid != first_rid
    assert policy.payload == body
    _answer(policy, 400, second_rid, now_ms=600)
    assert policy.twin.last_report_status == 400
    for now_ms in (600, 10000, 100000):
        assert policy.next_action(now_ms, NOW_S) == session.IDLE


def test_responses_to_unknown_or_malformed_request_ids_are_ignored():
    policy = _policy()
    rid = _ready(policy)
    for topic in (b"$iothub/twin/res/200/?$rid=" + str(int(rid) + 50).encode(),
                  b"$iothub/twin/res/abc/?$rid=" + rid.encode(),
                  b"$iothub/twin/res/200/",
                  b"devices/dev-01/messages/devicebound/x"):
        policy.message(topic, b'{"desired": {"Process_CacheSize": 8}}', 0)
    assert not policy.twin.received and policy.next_action(0, NOW_S) == session.IDLE


def test_twin_response_topic_parts():
    assert session.twin_response(b"$iothub/twin/res/200/?$rid=12") == (12, 200)
    assert session.twin_response(b"$iothub/twin/res/204/?$rid=7&$version=3") == (7, 204)
    assert session.twin_response(b"$iothub/twin/res/429/?$rid=999999") == (999999, 429)
    for bad in (b"$iothub/twin/res//?$rid=1", b"$iothub/twin/res/200/?$rid=",
                b"$iothub/twin/res/2000/?$rid=1", b"$iothub/twin/GET/?$rid=1"):
        assert session.twin_response(bad) == (-1, -1), bad
    assert [session.retriable(s) for s in (200, 204, 400, 429, 500, 503)] == [
        False, False, False, True, True, True]


def test_token_due_before_expiry_renews_with_a_fresh_token():
    policy = _policy(ttl_s=600, renew_s=60)
    _ready(policy, now_s=NOW_S)
    assert policy.next_action(1, NOW_S + 539) == session.IDLE
    assert policy.next_action(2, NOW_S + 540) == session.RENEW
    # Renewing is not a failure: the new connection goes at once, with a later expiry.
    assert policy.next_action(2, NOW_S + 540) == session.CONNECT
    assert policy.password.endswith("&se=%d" % (NOW_S + 540 + 600))
    assert policy.failures == 0


def test_refused_connections_back_off_doubling_to_the_cap_then_reset():
    policy = _policy(retry_min_ms=1000, retry_max_ms=8000)
    now = 0
    expected = []
    waits = []
    for attempt in range(6):
        assert policy.next_action(now, NOW_S) == session.CONNECT
        delay = policy.connection_lost(now)   # e.g. CONNACK "not authorized"
        waits.append(delay)
        expected.append(min(1000 * 2 ** attempt, 8000))
        assert policy.next_action(ticks_add(now, delay - 1), NOW_S) == session.IDLE
        assert policy.wake_ms == ticks_add(now, delay)
        now = ticks_add(now, delay)
    assert waits == expected == [1000, 2000, 4000, 8000, 8000, 8000]
    _ready(policy, now_ms=now)
    assert policy.failures == 0 and policy.connection_lost(now) == 1000


def test_connection_lost_mid_get_asks_again_on_the_next_connection():
    policy = _policy()
    rid = _ready(policy)
    policy.connection_lost(10)
    assert not policy.ready()
    _answer(policy, 200, rid, b'{"desired": {"Process_CacheSize": 8}, "reported": {}}')
    assert not policy.twin.received  # an answer from the old connection
    again = _ready(policy, now_ms=1010)
    assert again != rid


def test_a_subscription_acknowledged_after_connecting_only_then_lets_telemetry_flow():
    policy = _policy()
    assert policy.next_action(0, NOW_S) == session.CONNECT
    assert not policy.ready()
    policy.connected()
    assert not policy.ready()
    assert policy.next_action(0, NOW_S) == session.SUBSCRIBE
    assert not policy.ready()
    policy.subscribed()
    assert policy.ready()


def test_plain_broker_has_no_twin_and_no_token():
    policy = session.Session(None, None, 1000, 4000)
    assert policy.next_action(0, NOW_S) == session.CONNECT and policy.password is None
    policy.connected()
    assert policy.ready()
    assert policy.next_action(0, NOW_S) == session.IDLE
    policy.message(b"$iothub/twin/res/200/?$rid=1", b"{}", 0)
    assert policy.next_action(0, NOW_S + 10 ** 6) == session.IDLE


def test_a_ready_session_allocates_nothing_per_step():
    if not hasattr(gc, "mem_alloc"):
        return  # CPython: nothing to measure
    policy = _policy()
    _ready(policy)
    now_s = NOW_S + 1
    gc.collect()
    before = gc.mem_alloc()
    for now_ms in range(1000):
        policy.next_action(now_ms, now_s)
        policy.ready()
    assert gc.mem_alloc() - before == 0
