"""`microagent decode [FILE|-]`: compact messages back to the JSON messages the JSON encoding
would have produced, one per line."""
import sys

from microagent.decode import DecodeError, body_of_line, decode_body, message_text
from microagent.compact import is_compact

from host_sim.cli import UsageError, log_line
from hub_emulator.printable import json_line
from host_sim.replay import write_line


def register(subparsers):
    p = subparsers.add_parser(
        "decode", help="turn compact messages back into JSON messages",
        description="Reads messages one per line, as `replay`/`run --encoding compact` print "
                    "them (base64 of a compact message; JSON lines pass through), or one raw "
                    "compact body, and prints each as the JSON message the JSON encoding would "
                    "have produced, field for field. A message that cannot be read is named on "
                    "stderr and skipped; the exit status is then 1.")
    p.add_argument("file", metavar="FILE", nargs="?", default="-",
                   help="input file, or - for stdin (default)")
    p.set_defaults(run=run)


def _read(path):
    if path == "-":
        return sys.stdin.buffer.read(), "stdin"
    try:
        with open(path, "rb") as f:
            return f.read(), path
    except OSError as exc:
        raise UsageError("cannot read %s: %s" % (path, exc.strerror or exc))


def run(args):
    try:
        return _decode(args)
    except BrokenPipeError:  # the reader stopped early (| head): nothing more to say
        return 0


def _decode(args):
    data, name = _read(args.file)
    if is_compact(data):
        try:
            write_line(json_line(message_text(decode_body(data))))
        except DecodeError as exc:
            log_line("microagent: error: %s: %s" % (name, exc))
            return 1
        return 0
    failed = 0
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        try:
            if text is None:
                raise DecodeError("not UTF-8 text (a raw compact body must be the whole file)")
            write_line(json_line(message_text(decode_body(body_of_line(text)))))
        except DecodeError as exc:
            failed += 1
            log_line("microagent: error: %s:%d: %s" % (name, number, exc))
    return 1 if failed else 0
