"""Baseline collector (trigger-based): CIS benchmark checks, written as data, run against `root`.

    collect(root="/", checks_disabled="", groups_disabled="") -> [payload item]
    run_checks(root="/", checks=None) -> [Result]          (every result, Pass included)
    load_checks(directory=None) -> [check dict]

The checks live in host_sim/baseline/*.json, one file per group:
    {"group": "Network", "benchmark": "debian-12",
     "source": "CIS Debian Linux 12 Benchmark",
     "checks": [{"id": "3.3.1", "description": ..., "remediation": ..., "severity": ...,
                 "test": {"type": "sysctl", ...}, "applies_if_exists": "/path" (optional)}]}
and become payload items (docs/spec.md section 5, Baseline) with
    check_id = "CIS-<benchmark>-<group>-<id>", e.g. CIS-debian-12-Network-3.3.1.
Only Fail and Error results are sent. A check that cannot run (a file it needs is missing or
unreadable, an unknown test type, bad check data) is an Error whose `error` says why; it never
raises. A check whose `applies_if_exists` path is absent (e.g. the SSH checks without an SSH
server) is not applicable and not sent. `Baseline_ChecksDisabled` (check ids, full or short)
and `Baseline_GroupsDisabled` (group names), each a list or a comma-separated string, are
honoured.

Test types (see TESTS): kernel_module_disabled, mount_exists, mount_option, sysctl,
packages_absent, packages_present, services_not_in_use, file_mode, sshd_option,
key_value (login.defs, journald.conf), kernel_cmdline, accounts.
"""
import glob
import json
import os
import re
import stat

from host_sim.collectors import rootfs, sbom

CHECKS_DIRECTORY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "baseline")
PASS, FAIL, ERROR, NOT_APPLICABLE = "Pass", "Fail", "Error", "NotApplicable"


class CheckError(Exception):
    """The check cannot run; the message is the reason reported in `error`."""


class Failed(Exception):
    """The check ran and the system does not comply; the message says what was found."""


class Result:
    __slots__ = ("check", "result", "reason")

    def __init__(self, check, result, reason=""):
        self.check, self.result, self.reason = check, result, reason

    def item(self):
        c = self.check
        return {"check_id": c["check_id"], "check_result": self.result,
                "error": self.reason if self.result == ERROR else "",
                "description": c.get("description", ""),
                "remediation": c.get("remediation", ""),
                "severity": c.get("severity", "")}


def load_checks(directory=None):
    """Every check of every group file, each with its full check_id and group."""
    checks = []
    for filename in sorted(glob.glob(os.path.join(directory or CHECKS_DIRECTORY, "*.json"))):
        with open(filename, encoding="utf-8") as f:
            try:
                data = json.load(f)
            except ValueError as exc:
                raise ValueError("%s: not valid JSON: %s" % (filename, exc))
        for check in data["checks"]:
            check = dict(check)
            check["group"] = data["group"]
            check["check_id"] = "CIS-%s-%s-%s" % (data["benchmark"], data["group"], check["id"])
            checks.append(check)
    return checks


def split_list(value):
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [str(part).strip() for part in (value or ())]


def is_disabled(check, checks_disabled, groups_disabled):
    return (check["group"] in groups_disabled or check["check_id"] in checks_disabled
            or check["id"] in checks_disabled)


def enabled_checks(checks_disabled="", groups_disabled=""):
    """The checks left after Baseline_ChecksDisabled and Baseline_GroupsDisabled."""
    checks_disabled = set(split_list(checks_disabled))
    groups_disabled = set(split_list(groups_disabled))
    return [c for c in load_checks() if not is_disabled(c, checks_disabled, groups_disabled)]


def collect(root="/", checks_disabled="", groups_disabled=""):
    checks = enabled_checks(checks_disabled, groups_disabled)
    return [r.item() for r in run_checks(root, checks) if r.result in (FAIL, ERROR)]


def run_checks(root="/", checks=None):
    system = System(root)
    return [evaluate(check, system) for check in (load_checks() if checks is None else checks)]


def evaluate(check, system):
    try:
        required = check.get("applies_if_exists")
        if required and not os.path.lexists(rootfs.path(system.root, required)):
            return Result(check, NOT_APPLICABLE, "%s does not exist" % required)
        test = check["test"]
        function = TESTS.get(test.get("type"))
        if function is None:
            raise CheckError("unknown test type %r in the check data" % test.get("type"))
        function(system, test)
        return Result(check, PASS)
    except Failed as exc:
        return Result(check, FAIL, str(exc))
    except CheckError as exc:
        return Result(check, ERROR, str(exc))
    except Exception as exc:                         # bad check data or an odd system: never crash
        return Result(check, ERROR, "%s: %s" % (type(exc).__name__, exc))


class System:
    """What the checks read, loaded once per run and shared."""

    def __init__(self, root):
        self.root = root
        self._cache = {}

    def cached(self, key, loader):
        if key not in self._cache:
            self._cache[key] = loader()
        return self._cache[key]

    def text(self, absolute):
        try:
            return rootfs.read_text(self.root, absolute)
        except FileNotFoundError:
            raise CheckError("%s not found" % absolute)
        except OSError as exc:
            raise CheckError("cannot read %s: %s" % (absolute, exc.strerror))

    def packages(self):
        def load():
            databases = [sbom.DPKG_STATUS] + list(sbom.OPKG_STATUS)
            if not any(os.path.exists(rootfs.path(self.root, d)) for d in databases):
                return None
            return {p.name for p in sbom.installed_packages(self.root)}
        installed = self.cached("packages", load)
        if installed is None:
            raise CheckError("no package database (dpkg or opkg status) to check packages in")
        return installed

    def mounts(self):
        """{mount point: set of options} from /proc/mounts (the last mount on a point wins)."""
        def load():
            mounts = {}
            for line in self.text("/proc/mounts").splitlines():
                fields = line.split()
                if len(fields) >= 4:
                    mounts[fields[1].replace("\\040", " ")] = set(fields[3].split(","))
            return mounts
        return self.cached("mounts", load)

    def table(self, absolute):
        """Colon-separated account file (/etc/passwd, /etc/shadow, /etc/group) as rows."""
        return self.cached(absolute, lambda: [
            line.split(":") for line in self.text(absolute).splitlines()
            if line.strip() and not line.startswith("#")])


# -- tests: each returns on compliance, raises Failed or CheckError otherwise ------------------
def kernel_module_disabled(system, test):
    """CIS "kernel module is not available": not loaded, and if the module exists on disk it is
    both made unloadable (install MODULE /bin/false) and deny-listed (blacklist MODULE)."""
    module = test["module"]
    name = module.replace("-", "_")
    loaded = system.cached("modules", lambda: _loaded_modules(system))
    if name in loaded:
        raise Failed("module %s is loaded" % module)
    if name not in system.cached("module_files", lambda: _module_files(system)):
        return
    config = system.cached("modprobe", lambda: _modprobe_config(system))
    if config.get(("install", name)) not in ("/bin/false", "/bin/true"):
        raise Failed("module %s can still be loaded (no 'install %s /bin/false')" % (module, module))
    if ("blacklist", name) not in config:
        raise Failed("module %s is not deny-listed (no 'blacklist %s')" % (module, module))


def _loaded_modules(system):
    try:
        text = rootfs.read_text(system.root, "/proc/modules")
    except OSError:
        return set()                 # a kernel without module support has none loaded
    return {line.split()[0] for line in text.splitlines() if line.strip()}


def _module_files(system):
    release = rootfs.read_first_line(system.root, "/proc/sys/kernel/osrelease")
    base = rootfs.path(system.root, "/lib/modules/%s" % release)
    names = set()
    for _directory, _dirs, files in os.walk(base):
        for filename in files:
            if ".ko" in filename:
                names.add(filename.split(".ko", 1)[0].replace("-", "_"))
    return names


def _modprobe_config(system):
    rules = {}
    for directory in ("/etc/modprobe.d", "/usr/lib/modprobe.d", "/lib/modprobe.d",
                      "/run/modprobe.d"):
        for filename in sorted(glob.glob(rootfs.path(system.root, directory + "/*.conf"))):
            try:
                with open(filename, encoding="utf-8", errors="replace") as f:
                    lines = f.read().splitlines()
            except OSError:
                continue
            for line in lines:
                fields = line.split("#", 1)[0].split()
                if len(fields) >= 2 and fields[0] in ("install", "blacklist"):
                    rules[(fields[0], fields[1].replace("-", "_"))] = " ".join(fields[2:])
    return rules


def mount_exists(system, test):
    if test["mount"] not in system.mounts():
        raise Failed("%s is not a separate mount" % test["mount"])


def mount_option(system, test):
    options = system.mounts().get(test["mount"])
    if options is None:
        raise Failed("%s is not a separate mount, so it has no %s option"
                     % (test["mount"], test["option"]))
    if test["option"] not in options:
        raise Failed("%s is mounted without %s" % (test["mount"], test["option"]))


def sysctl(system, test):
    """Every key has the expected value. IPv6 keys do not apply when IPv6 is disabled."""
    ipv6_present = os.path.isdir(rootfs.path(system.root, "/proc/sys/net/ipv6"))
    wrong = []
    for key in test["keys"]:
        if key.startswith("net.ipv6.") and not ipv6_present:
            continue
        absolute = "/proc/sys/" + key.replace(".", "/")
        value = " ".join(system.text(absolute).split())
        if value != str(test["expected"]):
            wrong.append("%s = %s" % (key, value))
    if wrong:
        raise Failed("expected %s: %s" % (test["expected"], ", ".join(wrong)))


def packages_absent(system, test):
    found = sorted(set(test["packages"]) & system.packages())
    if found:
        raise Failed("installed: %s" % ", ".join(found))


def packages_present(system, test):
    missing = sorted(set(test["packages"]) - system.packages())
    if missing:
        raise Failed("not installed: %s" % ", ".join(missing))


def services_not_in_use(system, test):
    """CIS "services are not in use": the packages are absent, or their units are not enabled
    (no symlink in a *.wants directory under /etc/systemd/system)."""
    if not set(test["packages"]) & system.packages():
        return
    enabled = []
    for unit in test["units"]:
        if glob.glob(rootfs.path(system.root, "/etc/systemd/system/*.wants/" + unit)):
            enabled.append(unit)
    if enabled:
        raise Failed("enabled: %s" % ", ".join(enabled))


def file_mode(system, test):
    """Each file matching `path` (a glob) is at most `mode_max` and owned as required."""
    pattern = rootfs.path(system.root, test["path"])
    matches = sorted(glob.glob(pattern)) if glob.has_magic(test["path"]) else [pattern]
    matches = [m for m in matches if os.path.lexists(m)]
    if not matches:
        if test.get("missing_ok"):
            return
        raise CheckError("%s not found" % test["path"])
    users = _names_by_id(_rows(system, "/etc/passwd"))
    groups = _names_by_id(_rows(system, "/etc/group"))
    max_mode = int(test["mode_max"], 8)
    problems = []
    for filename in matches:
        st = os.lstat(filename)
        shown = "/" + os.path.relpath(filename, system.root) if system.root != "/" else filename
        mode = stat.S_IMODE(st.st_mode)
        if mode & ~max_mode:
            problems.append("%s has mode %04o (at most %s)" % (shown, mode, test["mode_max"]))
        owner = users.get(st.st_uid, str(st.st_uid))
        if "owner" in test and owner != test["owner"]:
            problems.append("%s is owned by %s" % (shown, owner))
        group = groups.get(st.st_gid, str(st.st_gid))
        if "groups" in test and group not in test["groups"]:
            problems.append("%s has group %s" % (shown, group))
    if problems:
        raise Failed("; ".join(problems))


def _names_by_id(rows):
    """{id: name} from account rows; the first name of an id wins, as in getpwuid()."""
    names = {}
    for row in rows:
        if len(row) > 2 and row[2].isdigit():
            names.setdefault(int(row[2]), row[0])
    return names


def _rows(system, absolute):
    try:
        return system.table(absolute)
    except CheckError:
        return []


def sshd_option(system, test):
    """The effective value of an sshd_config keyword (first occurrence wins; Include files are
    read where they appear; Match blocks are not global and are ignored), else sshd's default."""
    keyword = test["keyword"].lower()
    value = system.cached("sshd", lambda: _sshd_config(system)).get(keyword, test.get("default"))
    if value is None:
        raise Failed("%s is not set" % test["keyword"])
    if "allowed" in test and value.lower() not in [a.lower() for a in test["allowed"]]:
        raise Failed("%s is %s" % (test["keyword"], value))
    if "forbidden" in test and value.lower() in [a.lower() for a in test["forbidden"]]:
        raise Failed("%s is %s" % (test["keyword"], value))
    if "max" in test or "min" in test:
        number = _sshd_number(value)
        if number is None:
            raise Failed("%s is %s, not a number" % (test["keyword"], value))
        if "max" in test and number > test["max"]:
            raise Failed("%s is %s (at most %s)" % (test["keyword"], value, test["max"]))
        if "min" in test and number < test["min"]:
            raise Failed("%s is %s (at least %s)" % (test["keyword"], value, test["min"]))


def _sshd_number(value):
    """sshd numbers and times: '60', '1m', '1m30s' -> seconds; the first field of '10:30:60'."""
    value = value.split(":", 1)[0].lower()
    if value.isdigit():
        return int(value)
    parts = re.fullmatch(r"((\d+)[smhdw])+", value)
    if not parts:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([smhdw])", value))


def _sshd_config(system, absolute="/etc/ssh/sshd_config", depth=0):
    values = {}
    in_match = False
    for line in system.text(absolute).splitlines():
        fields = line.split("#", 1)[0].replace("=", " ", 1).split(None, 1)
        if len(fields) < 2:
            continue
        keyword, value = fields[0].lower(), fields[1].strip().strip('"')
        if keyword == "match":
            in_match = True
        elif in_match:
            continue
        elif keyword == "include" and depth < 8:
            for pattern in value.split():
                if not pattern.startswith("/"):
                    pattern = "/etc/ssh/" + pattern
                for filename in sorted(glob.glob(rootfs.path(system.root, pattern))):
                    relative = "/" + os.path.relpath(filename, system.root)
                    for k, v in _sshd_config(system, relative, depth + 1).items():
                        values.setdefault(k, v)
        else:
            values.setdefault(keyword, value)
    return values


def key_value(system, test):
    """A 'KEY value' or 'KEY=value' setting in a file (and its drop-in directory, read after it,
    last one wins), compared numerically (max/min) or against allowed values."""
    settings = {}
    files = [test["path"]] + sorted(
        "/" + os.path.relpath(f, system.root)
        for f in glob.glob(rootfs.path(system.root, test.get("dropins", "/nonexistent") + "/*.conf")))
    for absolute in files:
        for line in system.text(absolute).splitlines():
            line = line.split("#", 1)[0].strip()
            if not line or line.startswith("["):
                continue
            parts = line.split("=", 1) if "=" in line else line.split(None, 1)
            if len(parts) == 2:
                settings[parts[0].strip()] = parts[1].strip()
    value = settings.get(test["key"], test.get("default"))
    if value is None:
        raise Failed("%s is not set in %s" % (test["key"], test["path"]))
    if "allowed" in test and value not in test["allowed"]:
        raise Failed("%s is %s" % (test["key"], value))
    if "max" in test and not (value.isdigit() and int(value) <= test["max"]):
        raise Failed("%s is %s (at most %s)" % (test["key"], value, test["max"]))
    if "min" in test and not (value.isdigit() and int(value) >= test["min"]):
        raise Failed("%s is %s (at least %s)" % (test["key"], value, test["min"]))


def kernel_cmdline(system, test):
    """A kernel boot parameter is present (with at least `min` when given)."""
    params = dict((p.split("=", 1) + [""])[:2] for p in system.text("/proc/cmdline").split())
    value = params.get(test["parameter"])
    if value is None:
        raise Failed("%s is not on the kernel command line" % test["parameter"])
    if "equals" in test and value != test["equals"]:
        raise Failed("%s=%s" % (test["parameter"], value))
    if "min" in test and not (value.isdigit() and int(value) >= test["min"]):
        raise Failed("%s=%s (at least %s)" % (test["parameter"], value, test["min"]))


def _duplicates(values):
    seen, duplicates = set(), set()
    for value in values:
        (duplicates if value in seen else seen).add(value)
    return sorted(duplicates)


def accounts(system, test):
    """Named rules on the account databases (/etc/passwd, /etc/shadow, /etc/group)."""
    rule = test["rule"]
    if rule in ("shadowed_passwords", "only_root_uid0", "groups_exist"):
        passwd = [r for r in system.table("/etc/passwd") if len(r) >= 7]
    if rule == "shadowed_passwords":
        bad = [r[0] for r in passwd if r[1] != "x"]
    elif rule == "only_root_uid0":
        bad = [r[0] for r in passwd if r[2] == "0" and r[0] != "root"]
    elif rule == "no_empty_passwords":
        bad = [r[0] for r in system.table("/etc/shadow") if len(r) >= 2 and r[1] == ""]
    elif rule == "groups_exist":
        gids = {r[2] for r in system.table("/etc/group") if len(r) >= 3}
        bad = ["%s (gid %s)" % (r[0], r[3]) for r in passwd if r[3] not in gids]
    elif rule == "shadow_group_empty":
        group = system.table("/etc/group")
        shadow_gids = {r[2] for r in group if r[0] == "shadow" and len(r) >= 3}
        bad = ["member " + m for r in group if r[0] == "shadow" and len(r) >= 4
               for m in r[3].split(",") if m]
        bad += [r[0] for r in system.table("/etc/passwd") if len(r) >= 4 and r[3] in shadow_gids]
    elif rule in ("no_duplicate_uids", "no_duplicate_user_names"):
        column = 2 if rule == "no_duplicate_uids" else 0
        bad = ["duplicate " + d for d in
               _duplicates(r[column] for r in system.table("/etc/passwd") if len(r) > column)]
    elif rule in ("no_duplicate_gids", "no_duplicate_group_names"):
        column = 2 if rule == "no_duplicate_gids" else 0
        bad = ["duplicate " + d for d in
               _duplicates(r[column] for r in system.table("/etc/group") if len(r) > column)]
    else:
        raise CheckError("unknown accounts rule %r in the check data" % rule)
    if bad:
        raise Failed(", ".join(bad))


TESTS = {
    "kernel_module_disabled": kernel_module_disabled,
    "mount_exists": mount_exists,
    "mount_option": mount_option,
    "sysctl": sysctl,
    "packages_absent": packages_absent,
    "packages_present": packages_present,
    "services_not_in_use": services_not_in_use,
    "file_mode": file_mode,
    "sshd_option": sshd_option,
    "key_value": key_value,
    "kernel_cmdline": kernel_cmdline,
    "accounts": accounts,
}
