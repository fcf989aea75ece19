"""Device strings made safe to print on an operator's terminal.

A device (or any local user on a monitored host, through a process's argv) chooses the text of
its messages: an escape sequence could set the terminal's title or colour a forged "High" row, a
newline or carriage return could forge a whole row, and bidi overrides could reorder one. Every
table and text line a CLI prints passes device text through printable(); JSON output is escaped
by json.dumps already. Here in the hub emulator, the lowest layer that prints, so that both its
own CLI and host_sim's commands can import it."""
import re

# C0 controls, DEL and C1 controls; the bidi marks, embeddings, overrides and isolates; the
# Unicode line and paragraph separators; lone surrogates (a stored "\ud800" cannot be encoded
# to the terminal at all).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e"
                     "\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match):
    char = match.group()
    named = _NAMED.get(char)
    if named:
        return named
    code = ord(char)
    return "\\x%02x" % code if code < 0x100 else "\\u%04x" % code


def printable(value):
    """VALUE (any; not a str: its str()) as one line of text with every character that could
    act on a terminal shown as an escape: ESC as \\x1b, a newline as \\n, U+202E as \\u202e."""
    text = value if isinstance(value, str) else str(value)
    return _UNSAFE.sub(_escape, text)


def json_line(text):
    """TEXT, a JSON document written with ensure_ascii=False, with the characters printable()
    escapes written as JSON escapes (\\u009b): the same JSON value, safe on a terminal (outside
    strings JSON holds none of them)."""
    return _UNSAFE.sub(lambda m: "\\u%04x" % ord(m.group()), text)
