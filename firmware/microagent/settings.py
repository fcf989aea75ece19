# What the agent runs with on a board, read at boot before anything else is loaded: the board
# profile, the device file, and the outbox, allocated first because its buffer is the largest
# contiguous block the agent needs (later imports fragment the heap). MicroPython-compatible.
import gc
import json

from microagent import profile as board_profile
from microagent.outbox import Outbox

DEFAULT_CA_FILES = ("microagent_ca.der", "microagent_ca.pem")
_KEPT = ("name", "collectors", "max_message_bytes", "outbox", "fs_root", "config")


class Settings:
    """What the agent runs with: the board profile (microagent_board.json) and the device file
    (microagent_device.json: the connection string or `dps`, and optionally `port`, `ca` (a file name)
    and `window_ms`, which overrides every window length, for tests and demos)."""

    def __init__(self, profile_path=board_profile.PROFILE_FILE,
                 device_path=board_profile.CREDENTIALS_FILE):
        board = board_profile.load_profile(profile_path)
        # Only what the agent reads stays in the heap (the description alone is 100 bytes).
        self.board = {}
        for key in _KEPT:
            self.board[key] = board[key]
        del board
        with open(device_path) as f:
            device = json.load(f)
        # `flash.py --dps`: the DPS enrollment instead; boot() provisions (microagent.dps)
        self.dps = device.get("dps")
        self.connection_string = None if self.dps else board_profile.load_credentials(device_path)
        self.port = self._int(device, "port", 8883, device_path)
        self.window_ms = self._int(device, "window_ms", 0, device_path)
        self.ca_file = device.get("ca")
        if self.ca_file is not None and not isinstance(self.ca_file, str):
            raise board_profile.ProfileError("%s: key 'ca': expected a file name" % device_path)

    @staticmethod
    def _int(device, key, default, source):
        value = device.get(key, default)
        if type(value) is not int or value < 0:
            raise board_profile.ProfileError("%s: key '%s': expected a whole number >= 0"
                                             % (source, key))
        return value

    def ca_der(self):
        """The CA certificate (DER) the hub's TLS certificate must chain to."""
        names = (self.ca_file,) if self.ca_file else DEFAULT_CA_FILES
        for name in names:
            try:
                with open(name, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            if b"-----BEGIN" in data:
                from microagent.mqtt import pem_to_der
                return pem_to_der(data)
            return data
        raise board_profile.ProfileError(
            "no CA certificate for the hub's TLS: put it in %s (PEM or DER)" % " or ".join(names))

    def config(self, config_class):
        """The starting Config: the profile's keys as defaults; the profile's cache sizes are
        the most the module twin may ask for (they are what the board's heap was sized for)."""
        defaults = {}
        maxima = {}
        for key, value in self.board["config"].items():
            if key.endswith("_CacheSize"):
                if value < 1:
                    continue  # 0: the collector is off on this board, nothing allocated
                maxima[key] = value
            defaults[key] = value
        return config_class(defaults, maxima)


def boot(log, profile_path=board_profile.PROFILE_FILE,
         device_path=board_profile.CREDENTIALS_FILE):
    """(Settings, Outbox) of this board, or (None, None) after logging why the agent cannot run."""
    try:
        settings = Settings(profile_path, device_path)
    except (board_profile.ProfileError, OSError, ValueError) as exc:
        log("error: %s; the agent is not running" % exc)
        return None, None
    gc.collect()
    outbox = settings.board["outbox"]
    outbox = Outbox(outbox["max_messages"], outbox["max_bytes"])
    if settings.dps:
        from microagent.dps import provision_board
        if not provision_board(settings, log):
            return None, None
    return settings, outbox
