"""Files holding events or secrets are the owner's alone (issue 24, finding 8): mode 0600 in a
0700 folder whatever the umask of whoever runs the agent, SQLite's -wal and -shm files too."""
import os
import stat
import subprocess
import sys

import pytest

from hub_emulator.process import HubProcess

from host_sim.cloud.store import open_store
from host_sim.outbox import SqliteOutbox

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MICROAGENT = os.path.join(os.path.dirname(sys.executable), "microagent")
TRACE = os.path.join(REPO, "tests", "fixtures", "traces", "quiet-device.jsonl")


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def with_umask(mask, args, env=None):
    """ARGS run by a shell that set umask MASK first, as a user's login shell would."""
    return subprocess.run(["/bin/sh", "-c", 'umask %03o; exec "$@"' % mask, "sh"] + [str(a) for a in args],
                          capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with HubProcess(tmp_path_factory.mktemp("private") / "hub") as process:
        yield process


def replay_env(hub, device):
    return dict(os.environ, MICROAGENT_CONNECTION_STRING=hub.add_device(device))


def test_replay_outbox_is_0600_with_umask_022(hub, tmp_path):
    """Finding 8: `replay --engine host --outbox F` created F 0644: other users read the
    queued command lines."""
    outbox = tmp_path / "outbox.db"
    done = with_umask(0o022, [MICROAGENT, "replay", TRACE, "--engine", "host", "--ca", hub.ca,
                              "--port", hub.port, "--outbox", outbox], env=replay_env(hub, "umask-022"))
    assert done.returncode == 0, done.stderr
    assert mode(outbox) == 0o600
    assert hub.messages("umask-022")   # it really sent through the outbox


def test_default_outbox_folder_is_0700_and_file_0600(hub, tmp_path):
    env = dict(replay_env(hub, "default-outbox"), XDG_STATE_HOME=str(tmp_path / "state"))
    done = with_umask(0o002, [MICROAGENT, "replay", TRACE, "--engine", "host", "--ca", hub.ca,
                              "--port", hub.port], env=env)
    assert done.returncode == 0, done.stderr
    assert mode(tmp_path / "state" / "microagent") == 0o700
    assert mode(tmp_path / "state" / "microagent" / "outbox.db") == 0o600


def test_outbox_wal_and_shm_are_0600_and_an_old_wide_outbox_is_narrowed(tmp_path, umask_022):
    path = tmp_path / "outbox.db"
    path.touch()
    os.chmod(path, 0o644)                 # as an earlier version left it
    outbox = SqliteOutbox(str(path))
    try:
        outbox.put(b'{"Events": []}')
        assert {suffix: mode(str(path) + suffix) for suffix in ("", "-wal", "-shm")} == {
            "": 0o600, "-wal": 0o600, "-shm": 0o600}
    finally:
        outbox.close()


def test_cloud_store_and_its_wal_are_0600(tmp_path, umask_022):
    store = open_store(str(tmp_path / "cloud.db"))
    try:
        assert {suffix: mode(str(tmp_path / "cloud.db") + suffix) for suffix in ("", "-wal", "-shm")} == {
            "": 0o600, "-wal": 0o600, "-shm": 0o600}
    finally:
        store.close()


def test_written_output_is_0600_even_over_a_wider_file(tmp_path):
    """--output of record and sbom goes through one writer: a recording holds every event."""
    root = tmp_path / "root"
    (root / "var" / "lib" / "dpkg").mkdir(parents=True)
    (root / "var" / "lib" / "dpkg" / "status").write_text(
        "Package: openssl\nStatus: install ok installed\nVersion: 3.0.11-1\nArchitecture: amd64\n\n")
    out = tmp_path / "sbom.json"
    out.write_text("old")
    os.chmod(out, 0o644)
    done = with_umask(0o022, [MICROAGENT, "sbom", "--root", root, "--output", out])
    assert done.returncode == 0, done.stderr
    assert mode(out) == 0o600 and "openssl" in out.read_text()


def test_test_broker_key_is_0600(tmp_path, umask_022):
    sys.path.insert(0, os.path.join(REPO, "tools"))
    from mosquitto_broker import write_certs
    paths = write_certs(str(tmp_path))
    assert mode(paths["server.key"]) == 0o600
