"""Validation of messages against the project's JSON Schema (schema/message.schema.json, shipped
in the package as host_sim/data/message.schema.json)."""
import importlib.resources
import json

import jsonschema

_validator = None


def validator():
    global _validator
    if _validator is None:
        schema = json.loads(importlib.resources.files("host_sim").joinpath(
            "data", "message.schema.json").read_text(encoding="utf-8"))
        jsonschema.Draft202012Validator.check_schema(schema)
        _validator = jsonschema.Draft202012Validator(schema)
    return _validator


def errors(message):
    """Readable schema violations of MESSAGE (a dict or its JSON text); empty when valid."""
    if isinstance(message, (str, bytes)):
        message = json.loads(message)
    return ["%s: %s" % ("/".join(str(p) for p in e.absolute_path) or "(message)", e.message)
            for e in validator().iter_errors(message)]


def check(message):
    """MESSAGE parsed, or AssertionError listing every violation."""
    if isinstance(message, (str, bytes)):
        message = json.loads(message)
    problems = errors(message)
    if problems:
        raise AssertionError("message violates the schema:\n  " + "\n  ".join(problems[:10]))
    return message
