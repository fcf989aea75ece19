"""Defender for IoT's custom alert types, configured per device or device group: rules of kind
"custom" in a rules file, each with a `type`, the devices it applies to (`devices`: id globs,
and/or `tags`: tags given by the file's `device_tags`, a map of id glob -> tags standing in for
IoT Hub twin tags) and its allow list or allowed range.

  ProcessNotAllowed                  a process whose executable, program or command line matches
                                     no `allowed` glob
  ConnectionToIpNotAllowed           an outbound connection to an address outside `allowed`
                                     (addresses and CIDRs of either family; an IPv4-mapped
                                     IPv6 address is its IPv4 one)
  ConnectionFromIpNotAllowed         an inbound connection from an address outside `allowed`
  LocalUserNotAllowed                a login of a user not in `allowed`
  ActiveConnectionsNotInAllowedRange a window whose distinct connections are outside
                                     [`min`, `max`]
  FailedLocalLoginsNotInAllowedRange a window whose failed logins are outside [`min`, `max`]

A window's count is known once it is whole: when the device's next window begins.
"""
import fnmatch

from host_sim.cloud.alerts.addresses import network, network_of
from host_sim.cloud.alerts.cmdline import program_name

TYPES = {
    "ProcessNotAllowed": ("ProcessCreate", "allowed"),
    "ConnectionToIpNotAllowed": ("ConnectionCreate", "allowed"),
    "ConnectionFromIpNotAllowed": ("ConnectionCreate", "allowed"),
    "LocalUserNotAllowed": ("Login", "allowed"),
    "ActiveConnectionsNotInAllowedRange": ("ConnectionCreate", "range"),
    "FailedLocalLoginsNotInAllowedRange": ("Login", "range"),
}
KIND = ({"type"}, {"devices", "tags", "allowed", "min", "max", "max_evidence"})


def check(rule, device_tags):
    """ValueError naming what is wrong with a custom RULE."""
    kind = rule.get("type")
    if kind not in TYPES:
        raise ValueError("type must be one of %s" % ", ".join(sorted(TYPES)))
    for key in ("devices", "tags"):
        if key in rule and not (isinstance(rule[key], list)
                                and all(isinstance(v, str) for v in rule[key])):
            raise ValueError("%s must be a list of strings" % key)
    if "devices" not in rule and "tags" not in rule:
        raise ValueError("say which devices it applies to: devices (id globs) and/or tags")
    if TYPES[kind][1] == "allowed":
        allowed = rule.get("allowed")
        if not (isinstance(allowed, list) and all(isinstance(v, str) for v in allowed)):
            raise ValueError("allowed must be a list of strings")
        if kind.startswith("Connection"):
            for value in allowed:
                try:
                    network(value)
                except ValueError:
                    raise ValueError("allowed: %r is not an address or network" % value) from None
    else:
        for key in ("min", "max"):
            value = rule.get(key)
            if value is not None and not (isinstance(value, int) and not isinstance(value, bool)
                                          and value >= 0):
                raise ValueError("%s must be an integer >= 0" % key)
        if rule.get("min") is None and rule.get("max") is None:
            raise ValueError("give min and/or max")
    if not isinstance(device_tags, dict):
        raise ValueError("device_tags must map device-id globs to lists of tags")


class CustomAlerts:
    """The custom rules, compiled. feed(device, state, event, t_msg, item_time) -> a list of
    (rule, key, t, evidence, fields) to raise."""

    def __init__(self, rules, device_tags):
        self.rules = []
        for rule in rules:
            if rule["kind"] != "custom":
                continue
            networks = None
            if rule["type"].startswith("Connection") and "allowed" in rule:
                networks = [network(v) for v in rule["allowed"]]
            self.rules.append((rule, networks))
        self.device_tags = device_tags or {}
        self._applies = {}

    def _rules_for(self, device):
        found = self._applies.get(device)
        if found is None:
            tags = {tag for pattern, tags in self.device_tags.items()
                    if fnmatch.fnmatchcase(device, pattern) for tag in tags}
            found = [(rule, networks) for rule, networks in self.rules
                     if any(fnmatch.fnmatchcase(device, g) for g in rule.get("devices", ()))
                     or tags & set(rule.get("tags", ()))]
            if len(self._applies) < 100000:
                self._applies[device] = found
        return found

    def feed(self, device, state, event, t_msg, item_time):
        if not self.rules:
            return []
        out = []
        name = event["Name"]
        for rule, networks in self._rules_for(device):
            kind = rule["type"]
            if TYPES[kind][0] != name:
                continue
            if TYPES[kind][1] == "range":
                self._window(state, rule, event, t_msg, out)
                continue
            for item in event["Payload"]:
                t = item_time(item, t_msg)
                if kind == "ProcessNotAllowed":
                    self._process(rule, item, t, out)
                elif kind == "LocalUserNotAllowed":
                    if item.get("operation") in ("Login", "LoginSuccess") \
                            and item.get("user_name") not in rule["allowed"]:
                        out.append((rule, str(item.get("user_name")), t, item,
                                    dict(item, type=kind)))
                else:
                    wanted = "out" if kind == "ConnectionToIpNotAllowed" else "in"
                    if item.get("direction", "out") == wanted \
                            and network_of(item.get("remote_address"), networks) is None:
                        out.append((rule, str(item.get("remote_address")), t, item,
                                    dict(item, type=kind)))
        return out

    @staticmethod
    def _process(rule, item, t, out):
        commandline = item.get("commandline")
        executable = item.get("executable")
        names = [v for v in (executable, commandline) if isinstance(v, str)]
        if isinstance(commandline, str) and commandline.split():
            names.append(program_name(commandline.split()[0]))
            names.append(commandline.split()[0])
        if not any(fnmatch.fnmatchcase(name, allowed) for name in names
                   for allowed in rule["allowed"]):
            out.append((rule, str(commandline)[:512], t, item,
                        dict(item, type=rule["type"])))

    @staticmethod
    def _window(state, rule, event, t_msg, out):
        """Counts one window's items (a window may span several messages, with one event
        time); the previous window is judged when a later one begins."""
        windows = state.setdefault("custom_windows", {})
        current = windows.get(rule["id"])
        if rule["type"] == "FailedLocalLoginsNotInAllowedRange":
            count = sum(1 for item in event["Payload"] if item.get("operation") == "LoginFailed")
        else:
            count = len(event["Payload"])
        if current is not None and t_msg > current[0]:
            _judge(rule, current, out)
            current = None
        if current is None:
            current = windows[rule["id"]] = [t_msg, 0]
        if t_msg == current[0]:
            current[1] += count


def _judge(rule, window, out):
    t, count = window
    low, high = rule.get("min"), rule.get("max")
    if (low is not None and count < low) or (high is not None and count > high):
        evidence = {"window_end": t, "count": count, "min": low, "max": high,
                    "type": rule["type"]}
        out.append((rule, "window %.0f" % t, t, evidence, evidence))
