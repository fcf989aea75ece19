"""The alert engine's state on disk (`alerts --broker --state FILE`): what the rules learned of
each device (its baseline, bursts, last reports, sequence numbers, window spacing) and the
alerts raised, so a follower that restarts neither learns again nor forgets what it raised.

The file is a pickle, which loading runs as code: it is written 0600, replaced atomically (a
crash leaves the old state whole), and read only when its owner alone can write it.
"""
import os
import pickle
import tempfile

FORMAT = "microagent alert state 1"


class StateError(Exception):
    """The state file cannot be used; the message is one line naming the file."""


def load(path, engine):
    """Restores ENGINE (an AlertEngine, its rules already loaded) from PATH; False when PATH
    does not exist yet. Alerts of rules that are gone are dropped."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StateError("--state %s: %s" % (path, exc.strerror))
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if info.st_uid != os.geteuid() or info.st_mode & 0o022:
            raise StateError("--state %s: must be yours and writable by you alone (loading it "
                             "runs it as code)" % path)
        try:
            saved = pickle.load(f)
        except Exception as exc:  # a truncated or foreign file: any unpickling error
            raise StateError("--state %s: not a microagent alert state (%s)"
                             % (path, type(exc).__name__))
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise StateError("--state %s: not a microagent alert state" % path)
    known = {rule["id"] for rule in engine.rules.rules}
    engine.devices = saved["devices"]
    engine.alerts = {ident: alert for ident, alert in saved["alerts"].items()
                     if ident[1] in known}
    engine.newest_time = saved["newest_time"]
    engine.newest_arrival = saved["newest_arrival"]
    return True


def save(path, engine):
    """Writes ENGINE's state to PATH: a new 0600 file beside it, then renamed over it."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, temporary = tempfile.mkstemp(prefix=".alert-state-", dir=directory)
    except OSError as exc:
        raise StateError("--state %s: %s" % (path, exc.strerror))
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump({"format": FORMAT, "devices": engine.devices, "alerts": engine.alerts,
                         "newest_time": engine.newest_time,
                         "newest_arrival": engine.newest_arrival},
                        f, protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException as exc:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise StateError("--state %s: %s" % (path, exc.strerror))
        raise
