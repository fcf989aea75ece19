# Entry point run inside MicroPython (or CPython) by `microagent replay --engine firmware`:
#   micropython -X heapsize=64K -m microagent.replay_main TRACE [--window-ms MS]
#       [--process-cache N] [--network-cache N] [--login-cache N] [--network6-cache N]
#       [--max-message-size BYTES] [--agent-id GUID] [--encoding json|compact]
#       [--credentials FILE|- --ca FILE [--port N] [--outbox-messages N] [--outbox-bytes N]]
#       [--dps FILE|- [--dps-hub HOST --dps-device ID] instead of --credentials]
#       [--cert FILE --key FILE: the client certificate of an x509=true connection string]
# Prints each message as one line on stdout (JSON, or base64 of a compact message), warnings
# on stderr; exit 2 on a bad trace.
# With --credentials (a file holding the device connection string, or - for one line on
# stdin, so the key is never on a command line) the messages go to IoT Hub over TLS instead,
# through the bounded outbox. With --dps (the DPS settings, GlobalEndpoint=...;IdScope=...;
# RegistrationId=...;SymmetricKey=..., likewise) the device registers through DPS first, unless
# --dps-hub and --dps-device give the assignment an earlier run reported.
import gc
import sys

from microagent.encode import MAX_MESSAGE_SIZE, MIN_MESSAGE_SIZE
from microagent.engine import build_engine


def _options(argv):
    # A board keeps the network cache at the spec's 256 entries but small process and login
    # caches: processes and logins are Linux collectors, rare on a microcontroller.
    options = {"--window-ms": "7200000", "--process-cache": "16", "--network-cache": "256",
               "--login-cache": "16", "--network6-cache": "64", "--max-message-size": "4096",
               "--agent-id": "00000000-0000-4000-8000-000000000000", "--credentials": None,
               "--ca": None, "--port": "8883", "--outbox-messages": "8",
               "--outbox-bytes": "32768", "--wait-ms": "30000", "--encoding": "json",
               "--dps": None, "--dps-hub": None, "--dps-device": None, "--cert": None,
               "--key": None}
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
        raise ValueError("usage: replay_main TRACE [--window-ms MS] [--network-cache N] ...")
    return trace, options


def _write_message(buffer, length):
    out = sys.stdout.buffer
    if buffer[0] == 0xD9:
        # A compact (binary) body as a base64 line keeps stdout text; b2a_base64 ends the line.
        from binascii import b2a_base64
        out.write(b2a_base64(memoryview(buffer)[:length]))
        return
    out.write(memoryview(buffer)[:length])
    out.write(b"\n")


def _warn(text):
    sys.stderr.write("warning: %s\n" % text)


def main(argv):
    try:
        trace, options = _options(argv)
        window_ms = int(options["--window-ms"])
        sizes = [int(options[k]) for k in ("--process-cache", "--network-cache", "--login-cache",
                                           "--network6-cache")]
        max_message_size = int(options["--max-message-size"])
        if window_ms < 1 or min(sizes) < 1:
            raise ValueError("window and cache sizes must be positive")
        if not MIN_MESSAGE_SIZE <= max_message_size <= MAX_MESSAGE_SIZE:
            raise ValueError("--max-message-size must be in %d..%d"
                             % (MIN_MESSAGE_SIZE, MAX_MESSAGE_SIZE))
    except ValueError as exc:
        sys.stderr.write("error: %s\n" % exc)
        return 2
    # The caches' large arrays are allocated before the uplink and the trace reader are loaded:
    # on a small heap they need contiguous room that loading more code would fragment.
    gc.collect()
    try:
        engine = build_engine(sizes[0], sizes[1], sizes[2], max_message_size,
                              options["--agent-id"], _write_message, _warn, options["--encoding"],
                              sizes[3])
    except ValueError as exc:
        sys.stderr.write("error: --encoding: %s\n" % exc)
        return 2
    uplink = None
    if options["--credentials"] or options["--dps"]:
        try:
            from microagent.replay_uplink import Uplink
            uplink = Uplink(options)
        except (OSError, ValueError) as exc:
            sys.stderr.write("error: cannot set up the uplink: %s\n" % exc)
            return 2
        engine.encoder.sink = uplink.send
    from microagent.trace import Replay, TraceError, replay_file
    replay = Replay(engine, window_ms)
    status = 0
    try:
        replay_file(replay, trace)
    except TraceError as exc:
        sys.stderr.write("error: %s\n" % exc)
        status = 2
    except OSError as exc:
        sys.stderr.write("error: cannot read trace %s: %s\n" % (trace, exc))
        status = 2
    # Whatever was collected before a bad line still goes out.
    if uplink is not None and not uplink.finish():
        sys.stderr.write("error: not every message reached the hub (see the counts above)\n")
        status = status or 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
