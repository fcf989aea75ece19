"""Validation of messages against the project's JSON Schema (schema/message.schema.json)."""
import json
import os

import jsonschema

SCHEMA_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "schema", "message.schema.json")
_validator = None


def validator():
    global _validator
    if _validator is None:
        with open(SCHEMA_PATH) as f:
            schema = json.load(f)
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
