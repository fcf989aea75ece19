"""Alert rules as data: the shipped default_rules.json, and a user file that overrides it.

A user file has the same shape. A rule with the id of a default rule changes only the keys it
gives ("enabled": false turns it off); a new id adds a rule; "learning" replaces the learning
period. Every mistake is a RulesError naming the file and the rule or key.
"""
import json
import os
import re
import string

from host_sim.cloud.alerts import custom, detect, hub_events

DEFAULT_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "default_rules.json")
# the detection catalogue, shipped beside the defaults and overridden the same way
CATALOGUE_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "detections.json")
TECHNIQUE = re.compile(r"^T[0-9]{4}(\.[0-9]{3})?$")

SEVERITIES = ("High", "Medium", "Low", "Informational")

# kind -> (required keys, optional keys) besides id, kind, severity, title, what_to_do, enabled
KINDS = {
    "burst": ({"event", "per", "count", "within_s"}, {"where", "lookup", "max_evidence"}),
    "new": ({"event", "per"}, {"where", "lookup", "max_evidence", "max_alerts", "group_after",
                               "group_within_s"}),
    "each": ({"event", "per"}, {"where", "lookup", "max_evidence"}),
    "report_change": ({"event", "per", "changes"}, {"where", "lookup", "value", "max_evidence"}),
    "sequence_gap": ({"property"}, {"max_evidence"}),
    "silence": ({"windows", "default_window_s"}, set()),
}
KINDS.update(detect.KINDS)
KINDS["custom"] = custom.KIND
KINDS.update(hub_events.KINDS)
COMMON = {"id", "kind", "severity", "title", "what_to_do", "enabled", "about", "technique",
          "tactic"}


class RulesError(ValueError):
    """A rules file that cannot be used; str() names the file and what is wrong."""


class Rules:
    """The rules in force: .learning_s, .rules (list of dicts, enabled ones only) and .sets
    (named lists of program names and paths the detections refer to as "@name")."""

    def __init__(self, learning_s, rules, sets=None, device_tags=None):
        self.learning_s = learning_s
        self.rules = rules
        self.sets = sets or {}
        self.device_tags = device_tags or {}   # device-id glob -> tags, for custom alerts

    def by_id(self, rule_id):
        for rule in self.rules:
            if rule["id"] == rule_id:
                return rule
        return None


def _read(path):
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise RulesError("cannot read rules file %s: %s" % (path, exc.strerror)) from None
    except UnicodeDecodeError:
        raise RulesError("rules file %s is not UTF-8" % path) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RulesError("rules file %s line %d: %s" % (path, exc.lineno, exc.msg)) from None
    if not isinstance(data, dict):
        raise RulesError("rules file %s: expected an object with \"rules\" (and \"learning\")" % path)
    unknown = set(data) - {"rules", "learning", "about", "sets", "device_tags"}
    if unknown:
        raise RulesError("rules file %s: unknown top-level key %r" % (path, sorted(unknown)[0]))
    if not isinstance(data.get("rules", []), list):
        raise RulesError("rules file %s: \"rules\" must be a list" % path)
    for key in ("sets", "device_tags"):
        mapping = data.get(key, {})
        if not (isinstance(mapping, dict) and all(
                isinstance(v, list) and all(isinstance(x, str) for x in v)
                for v in mapping.values())):
            raise RulesError("rules file %s: \"%s\" must map names to lists of strings"
                             % (path, key))
    return data


def load_rules(user_path=None, default_path=DEFAULT_FILE, catalogue_path=CATALOGUE_FILE):
    """The default rules and the detection catalogue, overridden by USER_PATH (if given),
    validated; a Rules."""
    base = _read(default_path)
    merged = {}
    order = []
    source = {}
    sets = {}
    device_tags = {}
    for path, data in ((default_path, base),
                       (catalogue_path, _read(catalogue_path) if catalogue_path else {})):
        sets.update(data.get("sets", {}))
        for rule in data.get("rules", []):
            merged[rule["id"]] = dict(rule)
            order.append(rule["id"])
            source[rule["id"]] = path
    learning = base.get("learning", {})
    learning_source = default_path
    if user_path:
        user = _read(user_path)
        sets.update(user.get("sets", {}))
        device_tags.update(user.get("device_tags", {}))
        if "learning" in user:
            learning, learning_source = user["learning"], user_path
        for index, rule in enumerate(user.get("rules", [])):
            if not isinstance(rule, dict) or not isinstance(rule.get("id"), str):
                raise RulesError("rules file %s: rule %d has no string \"id\"" % (user_path, index + 1))
            if isinstance(rule.get("file"), str) and not os.path.isabs(rule["file"]):
                # a threat list named in a rules file is found beside that file
                rule = dict(rule, file=os.path.join(os.path.dirname(os.path.abspath(user_path)),
                                                     rule["file"]))
            if rule["id"] in merged:
                merged[rule["id"]].update(rule)
            else:
                merged[rule["id"]] = dict(rule)
                order.append(rule["id"])
            source[rule["id"]] = user_path
    duration = learning.get("duration_s") if isinstance(learning, dict) else None
    if not isinstance(duration, (int, float)) or isinstance(duration, bool) or duration < 0:
        raise RulesError("rules file %s: learning.duration_s must be a number of seconds >= 0"
                         % learning_source)
    rules = []
    for rule_id in order:
        rule = merged[rule_id]
        _check(rule, source[rule_id], sets)
        if rule.get("enabled", True):
            rules.append(rule)
    return Rules(float(duration), rules, sets, device_tags)


def _fields(template):
    try:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name}
    except ValueError as exc:
        raise ValueError(str(exc)) from None


def _check(rule, path, sets):
    where = "rules file %s: rule %r" % (path, rule["id"])
    kind = rule.get("kind")
    if kind not in KINDS:
        raise RulesError("%s: kind must be one of %s, got %r" % (where, ", ".join(sorted(KINDS)), kind))
    required, optional = KINDS[kind]
    missing = (required | {"severity", "title", "what_to_do"}) - set(rule)
    if missing:
        raise RulesError("%s: missing key %r" % (where, sorted(missing)[0]))
    unknown = set(rule) - required - optional - COMMON
    if unknown:
        raise RulesError("%s: unknown key %r for kind %s" % (where, sorted(unknown)[0], kind))
    if rule["severity"] not in SEVERITIES:
        raise RulesError("%s: severity must be one of %s" % (where, ", ".join(SEVERITIES)))
    for key in ("title", "what_to_do"):
        if not isinstance(rule[key], str):
            raise RulesError("%s: %s must be a string" % (where, key))
        try:
            _fields(rule[key])
        except ValueError as exc:
            raise RulesError("%s: %s is not a valid template (%s)" % (where, key, exc)) from None
    for key in ("event", "property", "record"):
        if key in rule and not (isinstance(rule[key], str) and rule[key]):
            raise RulesError("%s: %s must be a non-empty string" % (where, key))
    if "per" in rule and not (isinstance(rule["per"], list) and rule["per"]
                              and all(isinstance(f, str) for f in rule["per"])):
        raise RulesError("%s: per must be a non-empty list of field names" % where)
    for key in ("count", "windows", "max_evidence", "max_alerts", "group_after"):
        if key in rule and not (isinstance(rule[key], int) and not isinstance(rule[key], bool)
                                and rule[key] >= 1):
            raise RulesError("%s: %s must be an integer >= 1" % (where, key))
    for key in ("within_s", "default_window_s", "group_within_s"):
        if key in rule and not (isinstance(rule[key], (int, float))
                                and not isinstance(rule[key], bool) and rule[key] > 0):
            raise RulesError("%s: %s must be a positive number of seconds" % (where, key))
    if "where" in rule and not isinstance(rule["where"], dict):
        raise RulesError("%s: where must be an object of field: value (or [values])" % where)
    if "changes" in rule and not (isinstance(rule["changes"], list) and rule["changes"]
                                  and set(rule["changes"]) <= {"added", "changed", "removed"}):
        raise RulesError("%s: changes must list \"added\", \"changed\" and/or \"removed\""
                         % where)
    if "technique" in rule and not (isinstance(rule["technique"], list) and all(
            isinstance(t, str) and TECHNIQUE.match(t) for t in rule["technique"])):
        raise RulesError("%s: technique must be a list of ATT&CK ids like \"T1110.001\"" % where)
    if "tactic" in rule and not isinstance(rule["tactic"], str):
        raise RulesError("%s: tactic must be a string" % where)
    for key in ("match", "downloaders"):
        if key in rule:
            try:
                if key == "match":
                    detect.compile_match(rule["match"], sets)
                elif not (isinstance(rule[key], list) and rule[key]):
                    raise detect.MatchError("downloaders must be a non-empty list")
                else:
                    detect._expand(rule[key], sets)
            except detect.MatchError as exc:
                raise RulesError("%s: %s: %s" % (where, key, exc)) from None
    if kind == "custom":
        try:
            custom.check(rule, {})
        except ValueError as exc:
            raise RulesError("%s: %s" % (where, exc)) from None
    if "file" in rule:
        try:
            detect.load_threat_list(rule["file"])
        except (OSError, UnicodeDecodeError, TypeError) as exc:
            raise RulesError("%s: file %s: %s" % (where, rule["file"],
                                                  getattr(exc, "strerror", None) or exc)) from None
        except ValueError as exc:
            raise RulesError("%s: %s" % (where, exc)) from None
    for name, spec in rule.get("lookup", {}).items():
        if not (isinstance(spec, dict) and isinstance(spec.get("from"), str)
                and isinstance(spec.get("map"), dict)):
            raise RulesError("%s: lookup %r needs \"from\" (a field) and \"map\" (an object)"
                             % (where, name))
