# Entry point run inside MicroPython (or CPython) by `microagent replay --engine firmware`:
#   micropython -X heapsize=64K -m microagent.replay_main TRACE [--window-ms MS]
#       [--cache-size N] [--max-message-size BYTES] [--agent-id GUID]
# Prints each message as one JSON line on stdout, warnings on stderr; exit 2 on a bad trace.
import sys

from microagent.cache import ProcessCache, NetworkCache, LoginCache, DnsTable
from microagent.encode import MessageEncoder
from microagent.engine import Engine
from microagent.trace import Replay, TraceError, replay_file



def _options(argv):
    options = {"--window-ms": "7200000", "--cache-size": "256", "--max-message-size": "4096",
               "--agent-id": "00000000-0000-4000-8000-000000000000"}
    trace = None
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in options:
            if i + 1 >= len(argv):
                raise ValueError("%s needs a value" % arg)
            options[arg] = argv[i + 1]
            i += 2
        elif trace is None and not arg.startswith("--"):
            trace = arg
            i += 1
        else:
            raise ValueError("unknown argument %s" % arg)
    if trace is None:
        raise ValueError("usage: replay_main TRACE [--window-ms MS] [--cache-size N] ...")
    return trace, options


def _write_message(buffer, length):
    out = sys.stdout.buffer
    out.write(memoryview(buffer)[:length])
    out.write(b"\n")


def _warn(text):
    sys.stderr.write("warning: %s\n" % text)


def build_engine(cache_size, max_message_size, agent_id, sink, warn):
    encoder = MessageEncoder(agent_id, sink, max_message_size)
    return Engine(ProcessCache(cache_size), NetworkCache(cache_size), LoginCache(cache_size),
                  DnsTable(cache_size), encoder, warn)


def main(argv):
    try:
        trace, options = _options(argv)
        window_ms = int(options["--window-ms"])
        cache_size = int(options["--cache-size"])
        max_message_size = int(options["--max-message-size"])
        if window_ms < 1 or cache_size < 1 or max_message_size < 512:
            raise ValueError("window, cache size and message size must be positive "
                             "(message size at least 512)")
    except ValueError as exc:
        sys.stderr.write("error: %s\n" % exc)
        return 2
    engine = build_engine(cache_size, max_message_size, options["--agent-id"], _write_message,
                          _warn)
    replay = Replay(engine, window_ms)
    try:
        replay_file(replay, trace)
    except TraceError as exc:
        sys.stderr.write("error: %s\n" % exc)
        return 2
    except OSError as exc:
        sys.stderr.write("error: cannot read trace %s: %s\n" % (trace, exc))
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
