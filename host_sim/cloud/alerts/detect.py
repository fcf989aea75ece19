"""Detections over the facts of events, whatever their spelling: what a process runs (program,
arguments, flags, paths, what it pipes into, inline code, wrappers, user, parent), what a device
connects to, and who logs in.

Rules are data (default_rules.json). A `process` rule's `match` is a list of clauses, any of
which may match; a clause is a set of conditions on one command of the line (see CONDITIONS),
all of which must hold. Names of programs and paths may refer to the rules file's `sets`
("@shells"). The stateful kinds (a download later run, a reconnaissance burst, a sweep of
destinations, a success after a brute force, a threat list) keep their per-device state in
plain dicts and lists, so it is stored as JSON with the rest of the device's state.
"""
import json
import posixpath
import re

from host_sim.cloud.alerts.addresses import LOCAL_SCOPES, endpoint, network, network_of, scope
from host_sim.cloud.alerts.custom import CustomAlerts
from host_sim.cloud.alerts.cmdline import (SHELLS, has_hidden_component, is_under,
                                           normalize_path, parse, program_name)

MAX_DOWNLOADS = 256          # recent downloads remembered per device
MAX_PARENTS = 4096           # process id -> program, per device
MAX_BURST_KEYS = 10000       # distinct keys counted per burst
MAX_BURST_USERS = 1000       # users followed at once per process_burst rule, per device
MAX_ID_TEXT = 64             # of a process or user id kept as text (a device may send anything)
VERDICT_CACHE = 8192         # distinct command lines whose matches are remembered


class MatchError(ValueError):
    """A clause that cannot be compiled; str() names the condition."""


def _lower_set(values):
    return frozenset(str(v).lower() for v in values)


def _expand(values, sets):
    """["@shells", "nc"] -> the names of the set 'shells' and 'nc'."""
    out = []
    for value in values:
        if isinstance(value, str) and value.startswith("@"):
            if value[1:] not in sets:
                raise MatchError("unknown set %r" % value)
            out.extend(sets[value[1:]])
        else:
            out.append(value)
    return out


def _regexes(values):
    try:
        return [re.compile(v, re.IGNORECASE) for v in values]
    except re.error as exc:
        raise MatchError("bad regular expression: %s" % exc) from None


def _ext(path):
    return posixpath.splitext(path.rstrip())[1].lower()


def _positional(command):
    """The script a command runs: its first positional argument (none for `sh -c`)."""
    if command.inline_code is not None or (command.program in SHELLS and "-c" in command.flags):
        return None
    for arg in command.args:
        if not arg.startswith("-"):
            return arg
    return None


def _all_paths(command):
    return [normalize_path(p) for p in command.paths()]


def _redirect_targets(command):
    # `2>&1`, `>&2`: descriptors, not files
    return [normalize_path(t) for op, t in command.redirects
            if op in (">", ">>", ">|", ">&", "<>") and not t.isdigit() and t != "-"]


def _exec_path(command, item):
    path = command.path
    if command.depth == 0 and not command.wrappers and "/" not in path:
        executable = item.get("executable")
        if isinstance(executable, str) and program_name(executable) == command.program:
            return executable
    return path


# condition name -> compile(value, sets) -> test(command, item, context)
def _c_program(value, sets):
    names = _lower_set(_expand(value, sets))
    return lambda c, item, ctx: c.program in names


def _c_not_program(value, sets):
    names = _lower_set(_expand(value, sets))
    return lambda c, item, ctx: c.program not in names


def _c_flag(value, sets):
    flags = frozenset(value)
    return lambda c, item, ctx: not flags.isdisjoint(c.flags)


def _c_all_flags(value, sets):
    flags = frozenset(value)
    return lambda c, item, ctx: flags <= c.flags


def _c_arg(value, sets):
    args = _lower_set(_expand(value, sets))
    return lambda c, item, ctx: any(a.lower() in args for a in c.args)


def _c_arg_prefix(value, sets):
    prefixes = tuple(_lower_set(_expand(value, sets)))
    return lambda c, item, ctx: any(a.lower().startswith(prefixes) for a in c.args)


def _c_arg_regex(value, sets):
    patterns = _regexes(value)
    return lambda c, item, ctx: any(p.search(a) for p in patterns for a in c.args)


def _c_text_regex(value, sets):
    patterns = _regexes(value)

    def test(c, item, ctx):
        text = " ".join([c.program] + c.args)
        return any(p.search(text) for p in patterns)
    return test


def _c_path_under(value, sets):
    dirs = _expand(value, sets)
    return lambda c, item, ctx: any(is_under(p, dirs) for p in _all_paths(c))


def _c_path_name(value, sets):
    names = frozenset(_expand(value, sets))
    return lambda c, item, ctx: any(posixpath.basename(p) in names for p in _all_paths(c))


def _c_redirect_under(value, sets):
    dirs = _expand(value, sets)
    return lambda c, item, ctx: any(is_under(p, dirs) for p in _redirect_targets(c))


def _c_redirect_name(value, sets):
    names = frozenset(_expand(value, sets))
    return lambda c, item, ctx: any(posixpath.basename(p) in names for p in _redirect_targets(c))


def _c_feeds(value, sets):
    names = _lower_set(_expand(value, sets))
    return lambda c, item, ctx: c.feeds in names


def _c_fed_by(value, sets):
    names = _lower_set(_expand(value, sets))
    return lambda c, item, ctx: c.fed_by in names


def _c_code_all(value, sets):
    patterns = _regexes(value)
    return lambda c, item, ctx: c.inline_code is not None and all(
        p.search(c.inline_code) for p in patterns)


def _c_exe_under(value, sets):
    dirs = _expand(value, sets)
    return lambda c, item, ctx: is_under(_exec_path(c, item), dirs)


def _c_exe_regex(value, sets):
    patterns = _regexes(value)
    return lambda c, item, ctx: any(p.search(_exec_path(c, item)) for p in patterns)


def _c_script_name(value, sets):
    """The basename of the program or of the script it runs (`sh ./LinEnum.sh`)."""
    names = _lower_set(_expand(value, sets))

    def test(c, item, ctx):
        script = _positional(c)
        return c.program in names or (
            script is not None and posixpath.basename(script).lower() in names)
    return test


def _c_overwrite_under(value, sets):
    """A file emptied or overwritten by a redirection (`> F`, not `>> F`)."""
    dirs = _expand(value, sets)
    return lambda c, item, ctx: any(
        op in (">", ">|", ">&") and not t.isdigit() and is_under(t, dirs)
        for op, t in c.redirects)


def _c_exe_hidden(value, sets):
    return lambda c, item, ctx: bool(value) == has_hidden_component(_exec_path(c, item))


def _c_script_under(value, sets):
    """The script an interpreter or wrapper runs (its first positional argument)."""
    dirs = _expand(value, sets)

    def test(c, item, ctx):
        script = _positional(c)
        return script is not None and "/" in script and is_under(script, dirs)
    return test


def _c_script_hidden(value, sets):
    def test(c, item, ctx):
        script = _positional(c)
        return script is not None and has_hidden_component(script) == bool(value)
    return test


def _c_script_ext(value, sets):
    extensions = _lower_set(_expand(value, sets))

    def test(c, item, ctx):
        script = _positional(c)
        return script is not None and c.inline_code is None and _ext(script) in extensions
    return test


def _c_trailing_space(value, sets):
    def test(c, item, ctx):
        names = [_exec_path(c, item)] + [a for a in c.args if "/" in a or "." in a]
        if c.depth == 0 and isinstance(item.get("executable"), str):
            names.append(item["executable"])  # an argv joined with spaces loses the trailing one
        return any(n and n != n.rstrip() for n in names) == bool(value)
    return test


def _c_wrapper(value, sets):
    names = _lower_set(_expand(value, sets))
    return lambda c, item, ctx: not names.isdisjoint(c.wrappers)


def _c_assign_regex(value, sets):
    patterns = _regexes(value)

    def test(c, item, ctx):
        texts = ["%s=%s" % kv for kv in c.assignments.items()]
        if c.program in ("export", "declare", "typeset", "unset", "set", "readonly", "local"):
            texts.extend(c.args)
        return any(p.search(t) for p in patterns for t in texts)
    return test


def _c_user(value, sets):
    names = frozenset(_expand(value, sets))
    return lambda c, item, ctx: item.get("user_name") in names


def _c_uid(value, sets):
    uids = frozenset(value)
    return lambda c, item, ctx: item.get("user_id") in uids


def _c_parent(value, sets):
    names = _lower_set(_expand(value, sets))
    return lambda c, item, ctx: ctx.get("parent") in names


def _c_not(value, sets):
    inner = compile_clause(value, sets)
    return lambda c, item, ctx: not inner(c, item, ctx)


CONDITIONS = {
    "program": _c_program, "not_program": _c_not_program, "flag": _c_flag,
    "all_flags": _c_all_flags, "arg": _c_arg, "arg_prefix": _c_arg_prefix,
    "arg_regex": _c_arg_regex, "text_regex": _c_text_regex, "path_under": _c_path_under,
    "path_name": _c_path_name, "redirect_under": _c_redirect_under,
    "redirect_name": _c_redirect_name, "feeds": _c_feeds, "fed_by": _c_fed_by,
    "code_all": _c_code_all, "exe_under": _c_exe_under, "exe_hidden": _c_exe_hidden,
    "exe_regex": _c_exe_regex, "script_name": _c_script_name, "action": _c_arg,
    "overwrite_under": _c_overwrite_under,
    "script_under": _c_script_under, "script_hidden": _c_script_hidden,
    "script_ext": _c_script_ext, "trailing_space": _c_trailing_space, "wrapper": _c_wrapper,
    "assign_regex": _c_assign_regex, "user": _c_user, "uid": _c_uid, "parent": _c_parent,
    "not": _c_not,
}
_SCALAR = {"exe_hidden", "script_hidden", "trailing_space", "not"}


def compile_clause(clause, sets):
    if not isinstance(clause, dict) or not clause:
        raise MatchError("a clause must be a non-empty object of conditions")
    tests = []
    for name, value in clause.items():
        if name not in CONDITIONS:
            raise MatchError("unknown condition %r" % name)
        if name not in _SCALAR and not (isinstance(value, list) and value):
            raise MatchError("condition %r needs a non-empty list" % name)
        tests.append(CONDITIONS[name](value, sets))
    return lambda c, item, ctx: all(t(c, item, ctx) for t in tests)


def compile_match(clauses, sets):
    """A rule's `match` -> test(commands, item, ctx) returning the first matching command."""
    if not (isinstance(clauses, list) and clauses):
        raise MatchError("match must be a non-empty list of clauses")
    compiled = [compile_clause(clause, sets) for clause in clauses]

    def test(commands, item, ctx):
        for command in commands:
            for clause in compiled:
                if clause(command, item, ctx):
                    return command
        return None
    return test


def remember_parent(state, item, commands):
    """process id -> program, bounded, oldest forgotten first (dict order)."""
    parents = state.setdefault("parents", {})
    pid = item.get("process_id")
    if pid is None or not commands:
        return
    pid = str(pid)[:MAX_ID_TEXT]
    parents.pop(pid, None)
    parents[pid] = commands[0].program
    while len(parents) > MAX_PARENTS:
        del parents[next(iter(parents))]


def evidence_of(item, command):
    return {"commandline": item.get("commandline"), "executable": item.get("executable"),
            "user_name": item.get("user_name"), "user_id": item.get("user_id"),
            "process_id": item.get("process_id"),
            "parent_process_id": item.get("parent_process_id"),
            "matched": " ".join([command.program] + command.args)[:512]}


# ---- downloads later made executable or run -----------------------------------------------

_URL = re.compile(r"^(?:https?|ftps?|tftp)://", re.IGNORECASE)
_EXEC_MODE = re.compile(r"^(?:[0-7]?[0-7]*[1357][0-7]{0,2}|[ugoa]*[+=][rwxXst]*x[rwxXst]*)$")


def _option(args, short, long_names):
    """The value of an option written `-o V`, `-oV`, `-qo V` (a cluster ending in it),
    `--output V` or `--output=V`; None when absent."""
    for i, arg in enumerate(args):
        following = args[i + 1] if i + 1 < len(args) else None
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            if name in long_names:
                return value if eq else following
        elif short and arg.startswith("-"):
            letters = arg[1:]
            index = letters.find(short[1])
            if index >= 0 and (index == 0 or letters[:index].isalpha()):
                rest = letters[index + 1:]
                return rest if rest else following
    return None


def _url_name(args):
    for arg in args:
        if _URL.match(arg):
            return posixpath.basename(arg.split("?")[0].split("#")[0].rstrip("/"))
    return None


def download_targets(command, downloaders):
    """The local files a downloader writes: each program's own options, or the remote name
    in the working folder, or a redirection of its output."""
    program = command.program
    if program not in downloaders:
        return []
    args = command.args
    targets = [t for op, t in command.redirects if op in (">", ">>", ">|")]
    positional = [a for a in args if not a.startswith("-")]
    if program == "curl":
        output = _option(args, "-o", ("--output",))
        if output and output != "-":
            targets.append(output)
        elif "-O" in command.flags or "--remote-name" in command.flags \
                or "--remote-name-all" in command.flags:
            targets.append(_url_name(args))
    elif program in ("wget", "busybox-wget", "fetch", "uclient-fetch", "aria2c", "axel"):
        if program in ("aria2c", "axel", "fetch"):
            output = _option(args, "-o", ("--out", "--output"))
        else:
            output = _option(args, "-O", ("--output-document",))
        if output and output != "-":
            targets.append(output)
        elif output is None and command.feeds is None:
            name = _url_name(args)
            folder = _option(args, "-P", ("--directory-prefix",)) or _option(args, "-d", ("--dir",))
            if name:
                targets.append(posixpath.join(folder, name) if folder else name)
    elif program == "tftp":
        local = _option(args, "-l", ("--local",))
        remote = _option(args, "-r", ("--remote",))
        if local or remote:
            targets.append(local or posixpath.basename(remote))
        elif "get" in args:
            after = args[args.index("get") + 1:]
            if after:
                targets.append(after[-1] if len(after) > 1 else posixpath.basename(after[0]))
    elif program == "ftpget" and len(positional) >= 2:
        targets.append(positional[1])
    elif program in ("scp", "sftp", "rsync") and len(positional) >= 2:
        destination = positional[-1]
        if ":" in destination.split("/")[0]:
            return [t for t in targets if t]   # an upload, not a download
        if destination.endswith("/") or destination in (".", ".."):
            destination = posixpath.join(destination, posixpath.basename(
                positional[-2].split(":", 1)[-1]))
        targets.append(destination)
    return [t for t in targets if t and t not in (".", "..")]


def made_executable(command):
    """Paths CHMOD makes executable."""
    if command.program != "chmod":
        return []
    args = [a for a in command.args if not a.startswith("-") or _EXEC_MODE.match(a[1:] or "-")]
    if len(args) < 2 or not _EXEC_MODE.match(args[0]):
        return []
    return args[1:]


def _download_steps(commands, downloaders, item):
    """What a line does with files, in order: ("use", name, how) for a file made executable or
    run, ("fetch", name, path) for a file a downloader writes."""
    steps = []
    for command in commands:
        used = [(p, "made executable") for p in made_executable(command)]
        used.append((_exec_path(command, item), "run"))
        script = _positional(command)
        if command.program in INTERPRETERS and script:
            used.append((script, "run"))
        for path, how in used:
            name = posixpath.basename(normalize_path(path or ""))
            if name:
                steps.append(("use", name, how))
        for target in download_targets(command, downloaders):
            path = normalize_path(target)
            steps.append(("fetch", posixpath.basename(path), path[:256]))
    return steps


# ---- helpers for the other stateful kinds --------------------------------------------------

def load_threat_list(path):
    """A threat list: plain lines (IPv4/IPv6 addresses, CIDRs, domains; '#' comments) or a STIX
    2.1 bundle (JSON) of indicators with patterns over ipv4-addr, ipv6-addr, domain-name and
    url. -> (networks, domains). ValueError naming the file and line."""
    with open(path, encoding="utf-8") as f:
        text = f.read(16 * 1024 * 1024)
    networks, domains = [], set()
    if text.lstrip().startswith("{"):
        try:
            bundle = json.loads(text)
        except ValueError as exc:
            raise ValueError("threat list %s: not JSON (%s)" % (path, exc)) from None
        objects = bundle.get("objects", []) if isinstance(bundle, dict) else []
        for obj in objects if isinstance(objects, list) else []:
            if not isinstance(obj, dict) or obj.get("type") != "indicator":
                continue
            pattern = obj.get("pattern")
            if not isinstance(pattern, str):
                continue
            for kind, value in re.findall(
                    r"(ipv4-addr|ipv6-addr|domain-name|url):value\s*(?:=|ISSUBSET)\s*'([^']*)'",
                    pattern):
                _add_indicator(kind, value, networks, domains)
        return networks, domains
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            networks.append(network(line))
        except ValueError:
            if not re.match(r"^[A-Za-z0-9*._-]+\.[A-Za-z0-9-]+\.?$", line):
                raise ValueError("threat list %s line %d: not an address, network or domain"
                                 % (path, number)) from None
            domains.add(line.lower().rstrip(".").lstrip("*."))
    return networks, domains


def _add_indicator(kind, value, networks, domains):
    if kind in ("ipv4-addr", "ipv6-addr"):
        try:
            networks.append(network(value))
        except ValueError:
            pass
    elif kind == "domain-name":
        domains.add(value.lower().rstrip("."))
    elif kind == "url":
        host = re.sub(r"^[a-z]+://", "", value.lower()).split("/")[0]
        # an IPv6 host is bracketed in a URL: [2001:db8::1]:8080
        host = host[1:].split("]")[0] if host.startswith("[") else host.split(":")[0]
        try:
            networks.append(network(host))
        except ValueError:
            if host:
                domains.add(host)


def address_listed(address, networks):
    """The network (as text) of NETWORKS that holds ADDRESS, else None."""
    network = network_of(address, networks)
    return str(network) if network is not None else None


def domain_listed(name, domains):
    if not isinstance(name, str):
        return None
    name = name.lower().rstrip(".")
    while name:
        if name in domains:
            return name
        _, _, name = name.partition(".")
    return None


# ---- the detector: every detection kind over one device's events --------------------------

KINDS = {
    # kind -> (required keys, optional keys) besides the common ones
    "process": ({"match"}, {"max_evidence"}),
    "download_run": ({"downloaders", "within_s"}, {"max_evidence"}),
    "process_burst": ({"match", "count", "within_s"}, {"max_evidence"}),
    "sweep": ({"count", "within_s"}, {"max_evidence"}),
    "after_burst": ({"count", "within_s"}, {"max_evidence"}),
    "listed": (set(), {"file", "max_evidence"}),
    "egress": ({"factor", "min_bytes"}, {"learning_s", "max_evidence"}),
    "flood": (set(), {"learning_s", "max_evidence"}),
}


def _item_time(item, t_msg, parse_time):
    return parse_time(item.get("timestamp")) or t_msg


class Detector:
    """The rules of KINDS, compiled. feed(device, state, event, t_msg, parse_time) -> a list of
    (rule, key, t, evidence, fields) to raise; STATE is the device's detection dict."""

    def __init__(self, rules, sets, device_tags=None):
        self.rules = [rule for rule in rules if rule["kind"] in KINDS]
        self.custom = CustomAlerts(rules, device_tags)
        self.process_rules = []
        self.burst_rules = []
        self.download_rules = []
        self.sweep_rules = []
        self.after_rules = []
        self.listed_rules = []
        self.egress_rules = []
        self.flood_rules = []
        self._verdicts = {}
        for rule in self.rules:
            kind = rule["kind"]
            if kind == "process":
                self.process_rules.append((rule, compile_match(rule["match"], sets)))
            elif kind == "process_burst":
                self.burst_rules.append((rule, compile_match(rule["match"], sets)))
            elif kind == "download_run":
                self.download_rules.append((rule, _lower_set(_expand(rule["downloaders"], sets))))
            elif kind == "sweep":
                self.sweep_rules.append(rule)
            elif kind == "after_burst":
                self.after_rules.append(rule)
            elif kind == "egress":
                self.egress_rules.append(rule)
            elif kind == "flood":
                self.flood_rules.append(rule)
            elif kind == "listed" and rule.get("file"):
                networks, domains = load_threat_list(rule["file"])
                self.listed_rules.append((rule, networks, domains))

    def feed(self, device, state, event, t_msg, parse_time):
        name = event["Name"]
        out = self.custom.feed(device, state, event, t_msg,
                               lambda item, t: _item_time(item, t, parse_time))
        if name == "ProcessCreate" and (self.process_rules or self.burst_rules
                                        or self.download_rules):
            for item in event["Payload"]:
                self._process(state, item, _item_time(item, t_msg, parse_time), out)
        elif name == "ConnectionCreate":
            # an item's time is parsed only when a rule keeps it (the per-item cost is the hot
            # path of a busy gateway)
            for item in event["Payload"]:
                outbound = item.get("direction", "out") == "out"
                unanswered = outbound and item.get("bytes_in") in (0, None)
                sent = outbound and item.get("bytes_out")
                if sent:
                    # bytes are counted per hour of the window's end: no item time needed
                    for rule in self.egress_rules:
                        self._egress(state, rule, item, t_msg, out)
                if not (unanswered or self.listed_rules):
                    continue
                t = _item_time(item, t_msg, parse_time)
                if unanswered:
                    for rule in self.sweep_rules:
                        self._sweep(state, rule, item, t, out)
                for rule, networks, domains in self.listed_rules:
                    self._listed(rule, networks, domains, item, t, out)
        elif name == "ConnectionOverflow":
            for rule in self.flood_rules:
                self._flood(state, rule, event, t_msg, parse_time, out)
            for item in event["Payload"]:     # the summary's rows name destinations too
                if self.listed_rules and item.get("scope") in ("destination", "address"):
                    t = _item_time(item, t_msg, parse_time)
                    for rule, networks, domains in self.listed_rules:
                        self._listed(rule, networks, domains, item, t, out)
        elif name == "Login":
            for item in event["Payload"]:
                if not self.listed_rules and not (
                        self.after_rules and item.get("operation") in AFTER_BURST_OPERATIONS):
                    continue
                t = _item_time(item, t_msg, parse_time)
                for rule in self.after_rules:
                    self._after_burst(state, rule, item, t, out)
                for rule, networks, domains in self.listed_rules:
                    self._listed(rule, networks, domains, item, t, out)
        return out

    def _verdict(self, item, parents):
        """(commands, process rule matches, burst rule matches) of ITEM: a device runs the same
        few command lines over and over, so the stateless part is computed once per distinct
        line, user and parent (a bounded cache, emptied when full)."""
        ppid = item.get("parent_process_id")
        parent = parents.get(str(ppid)[:MAX_ID_TEXT]) if ppid is not None else None
        key = (item.get("commandline"), item.get("executable"), item.get("user_name"),
               item.get("user_id"), parent)
        try:
            verdict = self._verdicts.get(key)
        except TypeError:           # a field of an unhashable type: hostile input, not cached
            key, verdict = None, None
        if verdict is None:
            commands = parse(item.get("commandline"), item.get("executable"))
            ctx = {"parent": parent}
            matched = [(rule, command) for rule, command in
                       ((rule, matcher(commands, item, ctx)) for rule, matcher in self.process_rules)
                       if command is not None]
            bursts = [(rule, command) for rule, command in
                      ((rule, matcher(commands, item, ctx)) for rule, matcher in self.burst_rules)
                      if command is not None]
            steps = [_download_steps(commands, downloaders, item)
                     for _, downloaders in self.download_rules]
            verdict = (commands, matched, bursts, steps)
            if key is not None:
                if len(self._verdicts) >= VERDICT_CACHE:
                    self._verdicts.clear()
                self._verdicts[key] = verdict
        return verdict

    def _process(self, state, item, t, out):
        commands, matched, bursts, steps = self._verdict(item, state.get("parents", {}))
        for rule, command in matched:
            evidence = evidence_of(item, command)
            out.append((rule, str(item.get("commandline"))[:512], t, evidence, evidence))
        for rule, command in bursts:
            self._process_burst(state, rule, item, command, t, out)
        for (rule, _), rule_steps in zip(self.download_rules, steps):
            self._download_run(state, rule, item, rule_steps, t, out)
        remember_parent(state, item, commands)

    def _download_run(self, state, rule, item, steps, t, out):
        """A file fetched, then made executable or run, by the same user or the same parent,
        within within_s; in one line or across events. STEPS: the line's uses and fetches, in
        order (_download_steps)."""
        downloads = state.get("downloads", {}).get(rule["id"])
        if not steps or (not downloads and all(step[0] == "use" for step in steps)):
            return      # the common case: nothing fetched lately, nothing fetched now
        downloads = state.setdefault("downloads", {}).setdefault(rule["id"], [])
        within = rule["within_s"]
        downloads[:] = [d for d in downloads if t - d[3] <= within]
        who = tuple(v if isinstance(v, (str, int, float, bool, type(None))) else repr(v)[:MAX_ID_TEXT]
                    for v in (item.get("user_id"), item.get("parent_process_id")))
        for step, name, detail in steps:
            if step == "fetch":
                downloads.append([name, detail, str(item.get("commandline"))[:256], t, who[0],
                                  who[1]])
                del downloads[:-MAX_DOWNLOADS]
                continue
            for fetched_name, fetched_path, fetched_by, fetched_t, user, parent in downloads:
                if fetched_name != name or (user != who[0] and parent != who[1]):
                    continue
                evidence = {"downloaded": fetched_path, "by": fetched_by,
                            "downloaded_at": fetched_t, "then": detail,
                            "commandline": str(item.get("commandline"))[:512],
                            "user_id": item.get("user_id"), "user_name": item.get("user_name")}
                out.append((rule, fetched_path[:256], t, evidence,
                            dict(evidence, file=fetched_path)))
                break

    def _process_burst(self, state, rule, item, command, t, out):
        """COUNT distinct matching commands of one user within within_s: one alert per burst."""
        bursts = state.setdefault("bursts", {}).setdefault(rule["id"], {})
        user = str(item.get("user_name") or item.get("user_id"))[:128]
        burst = bursts.get(user)
        if burst is None and len(bursts) >= MAX_BURST_USERS:
            # the users whose burst is over are forgotten; with none, this one is not followed
            for old in [u for u, b in bursts.items() if t - b["last"] > rule["within_s"]]:
                del bursts[old]
            if len(bursts) >= MAX_BURST_USERS:
                counts = state.setdefault("capped", {})
                counts["%s users" % rule["id"]] = counts.get("%s users" % rule["id"], 0) + 1
                return
        if burst is None or t - burst["last"] > rule["within_s"]:
            burst = bursts[user] = {"start": t, "last": t, "seen": [], "raised": False}
        burst["last"] = max(burst["last"], t)
        what = " ".join([command.program] + command.args)[:128]
        if what in burst["seen"] or len(burst["seen"]) >= MAX_BURST_KEYS:
            return
        burst["seen"].append(what)
        if len(burst["seen"]) >= rule["count"]:
            evidence = {"user": user, "commands": len(burst["seen"]),
                        "latest": str(item.get("commandline"))[:256]}
            fields = dict(evidence, within_s=rule["within_s"])
            out.append((rule, "%s since %.3f" % (user, burst["start"]), t, evidence, fields))

    def _sweep(self, state, rule, item, t, out):
        """Outbound connections that received nothing (a scan's refused or unanswered tries) to
        COUNT distinct destinations within within_s: one alert per burst, with counts."""
        if item.get("direction", "out") != "out" or item.get("bytes_in") not in (0, None):
            return
        if scope(item.get("remote_address")) in ("multicast", "broadcast"):
            return      # a group (NDP, mDNS, SSDP) is not a destination a scan tries
        sweeps = state.setdefault("sweeps", {})
        burst = sweeps.get(rule["id"])
        if burst is None or t - burst["last"] > rule["within_s"]:
            burst = sweeps[rule["id"]] = {"start": t, "last": t, "pairs": 0, "seen": {},
                                          "addresses": {}, "ports": {}}
        burst["last"] = max(burst["last"], t)
        address, port = str(item.get("remote_address")), item.get("remote_port")
        pair = endpoint(address, port)
        if pair not in burst["seen"] and len(burst["seen"]) < MAX_BURST_KEYS:
            burst["seen"][pair] = 1
            burst["pairs"] += 1
            if len(burst["addresses"]) < MAX_BURST_KEYS:
                burst["addresses"][address] = burst["addresses"].get(address, 0) + 1
            if len(burst["ports"]) < MAX_BURST_KEYS:
                burst["ports"][str(port)] = burst["ports"].get(str(port), 0) + 1
        else:
            return
        if burst["pairs"] >= rule["count"]:
            top = sorted(burst["addresses"].items(), key=lambda kv: -kv[1])[:5]
            evidence = {"destinations": burst["pairs"], "addresses": len(burst["addresses"]),
                        "ports": len(burst["ports"]),
                        "busiest_addresses": dict(top), "latest": pair}
            out.append((rule, "sweep since %.3f" % burst["start"], t, evidence,
                        dict(evidence, within_s=rule["within_s"])))

    def _egress(self, state, rule, item, t, out):
        """Bytes sent out per hour of device time (the hour of the window's end, T): the busiest
        hour of the learning period is the device's baseline; an hour past FACTOR times it (and
        past MIN_BYTES) is raised once, as soon as its running sum crosses the line, and updated
        while it grows."""
        sent = item.get("bytes_out")
        if item.get("direction", "out") != "out" or not isinstance(sent, int) \
                or isinstance(sent, bool) or sent <= 0:
            return
        if scope(item.get("remote_address")) in LOCAL_SCOPES:
            return      # bytes to loopback, the link or a group never leave the device's link
        egress = state.setdefault("egress", {}).setdefault(rule["id"], {
            "start": t, "hour": None, "sum": 0, "baseline": 0})
        hour = int(t // 3600)
        if hour != egress["hour"]:
            if egress["hour"] is not None and egress["hour"] * 3600 < egress["start"] + rule.get(
                    "learning_s", 86400):
                egress["baseline"] = max(egress["baseline"], egress["sum"])
            egress["hour"], egress["sum"] = hour, 0
        egress["sum"] += sent
        if t < egress["start"] + rule.get("learning_s", 86400):
            return
        limit = max(rule["factor"] * egress["baseline"], rule["min_bytes"])
        if egress["sum"] > limit:
            evidence = {"hour": hour * 3600, "bytes_out": egress["sum"],
                        "baseline_bytes_per_hour": egress["baseline"], "factor": rule["factor"],
                        "latest_destination": endpoint(item.get("remote_address"),
                                                       item.get("remote_port"))}
            out.append((rule, "hour %d" % (hour * 3600), t, evidence, evidence))

    def _flood(self, state, rule, event, t_msg, parse_time, out):
        """The agent's network cache lost connections in a window (its ConnectionOverflow
        summary): one alert per flooded window, naming the lost destinations that exchanged
        bytes both ways first. A device that floods in its learning day (past its first hour)
        floods as a matter of course, a busy gateway: its floods are left to the dropped-events
        rule from then on."""
        since = state.get("since", t_msg)      # the device's first message (the engine's)
        flood = state.setdefault("flood", {}).setdefault(rule["id"], {"routine": False})
        if flood["routine"]:
            return
        if since + 3600 < t_msg < since + rule.get("learning_s", 86400):
            flood["routine"] = True    # floods in its learning day past the first hour: its load
            return
        rows = [item for item in event["Payload"] if isinstance(item, dict)]
        key = "window %s" % event.get("TimestampUTC")
        if flood.get("window") != key:     # a window's summary may span several messages
            flood.update(window=key, lost=0, destinations=0, two_way=[])
        flood["lost"] += sum(item.get("hit_count") for item in rows
                             if isinstance(item.get("hit_count"), int))
        flood["destinations"] += len(rows)
        for item in rows:
            if item.get("scope") in ("destination", "address") and item.get("bytes_in") \
                    and item.get("bytes_out") and len(flood["two_way"]) < 17:
                flood["two_way"].append(endpoint(item.get("remote_address"),
                                                 item.get("remote_port", "*")))
        t = parse_time(event.get("TimestampUTC")) or t_msg
        evidence = {"window_start": rows[0].get("timestamp") if rows else None,
                    "connections_lost": flood["lost"], "destinations": flood["destinations"],
                    "two_way": list(flood["two_way"])}
        fields = dict(evidence, two_way=", ".join(flood["two_way"][:5]) or "none")
        out.append((rule, key, t, evidence, fields))

    def _after_burst(self, state, rule, item, t, out):
        """A successful login from an address that failed COUNT times within within_s before."""
        failures = state.setdefault("failures", {}).setdefault(rule["id"], {})
        address = item.get("remote_address")
        if not isinstance(address, str) or not address:
            return
        operation = item.get("operation")
        if operation == "LoginFailed":
            times = failures.setdefault(address, [])
            times.append(t)
            del times[:-rule["count"]]
            if len(failures) > MAX_BURST_KEYS:
                oldest = min(failures, key=lambda a: failures[a][-1])
                del failures[oldest]
        elif operation in ("Login", "LoginSuccess"):
            times = [x for x in failures.get(address, []) if 0 <= t - x <= rule["within_s"]]
            if len(times) >= rule["count"]:
                evidence = {"remote_address": address, "user_name": item.get("user_name"),
                            "failed_before": len(times), "executable": item.get("executable")}
                out.append((rule, "%s %s" % (address, item.get("user_name")), t, evidence,
                            dict(evidence, within_s=rule["within_s"])))

    def _listed(self, rule, networks, domains, item, t, out):
        address = item.get("remote_address")
        listed = address_listed(address, networks) if address else None
        host = None
        extended = item.get("extended_properties")
        if isinstance(extended, dict):
            host = extended.get("host_name")
        listed_host = domain_listed(host, domains) if host else None
        if listed or listed_host:
            evidence = {"remote_address": address, "remote_port": item.get("remote_port"),
                        "host_name": host, "listed": listed or listed_host}
            out.append((rule, str(listed_host or address), t, evidence, evidence))


AFTER_BURST_OPERATIONS = ("LoginFailed", "Login", "LoginSuccess")
INTERPRETERS = frozenset(("python", "perl", "ruby", "php", "node", "nodejs", "lua", "sh", "bash",
                          "dash", "ash", "zsh", "ksh"))
