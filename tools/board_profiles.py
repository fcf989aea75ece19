"""Board profiles on the host: boards/NAME.json checked against boards/schema.json and then by
the firmware's own loader (firmware/microagent/profile.py), so a profile accepted here also loads
on the board. Every error is one line naming the file and the key."""
import json
import os
import sys

import jsonschema
from jsonschema.exceptions import best_match

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOARDS_DIR = os.path.join(REPO, "boards")
SCHEMA_FILE = "schema.json"
MAX_DEPTH = 16  # profiles nest three levels; far deeper is no profile
sys.path.insert(0, os.path.join(REPO, "firmware"))

from microagent.profile import ProfileError, check  # noqa: E402


def names(boards_dir=BOARDS_DIR):
    """The board names available in BOARDS_DIR, sorted."""
    return sorted(f[:-5] for f in os.listdir(boards_dir)
                  if f.endswith(".json") and f != SCHEMA_FILE)


def _display(path):
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def _schema(boards_dir):
    with open(os.path.join(boards_dir, SCHEMA_FILE)) as f:
        return json.load(f)


def validate(data, source, schema):
    """Raises ProfileError (one line: SOURCE, key, problem) when DATA breaks SCHEMA or the loader."""
    error = best_match(jsonschema.Draft202012Validator(schema).iter_errors(data))
    if error is not None:
        path = [str(p) for p in error.absolute_path]
        message = error.message
        if error.validator == "required":  # name the missing key itself, as the board does
            path.append(next(k for k in error.validator_value if k not in error.instance))
            message = "missing"
        where = "key '%s'" % ".".join(path) if path else "top level"
        raise ProfileError("%s: %s: %s" % (source, where, message))
    check(data, source)


def _depth(value):
    """How deeply VALUE nests lists and objects (counted without recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        if children:
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in children)
    return deepest


def load(name, boards_dir=BOARDS_DIR):
    """The profile of board NAME from BOARDS_DIR, validated; ProfileError when unusable."""
    available = names(boards_dir)
    if name not in available:
        raise ProfileError("unknown board '%s': choose one of %s (profiles in %s)"
                           % (name, ", ".join(available), _display(boards_dir)))
    path = os.path.join(boards_dir, name + ".json")
    source = _display(path)
    with open(path) as f:
        text = f.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProfileError("%s line %d: not valid JSON (%s)" % (source, exc.lineno, exc.msg))
    except RecursionError:
        raise ProfileError("%s: nested deeper than %d levels" % (source, MAX_DEPTH)) from None
    if _depth(data) > MAX_DEPTH:  # the validator recurses once per level
        raise ProfileError("%s: nested deeper than %d levels" % (source, MAX_DEPTH))
    validate(data, source, _schema(boards_dir))
    if data["name"] != name:
        raise ProfileError("%s: key 'name': '%s' differs from the file name '%s'"
                           % (source, data["name"], name))
    return data


def main(argv=None):
    """`python tools/board_profiles.py [NAME...]`: validates profiles (all by default)."""
    argv = sys.argv[1:] if argv is None else argv
    failed = 0
    for name in argv or names():
        try:
            profile = load(name)
            print("%-12s ok   %s" % (name, profile["description"][:70]))
        except ProfileError as exc:
            failed += 1
            print(str(exc), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
