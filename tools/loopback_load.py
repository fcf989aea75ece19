"""Another program on a busy machine: opens TCP connections on 127.0.0.1 at a steady rate (each
sends one byte; the server reads it and closes), to run tests under while it goes.

    python tools/loopback_load.py [--rate 1000] [--seconds 600] [--connections N]

Loopback only, bounded: it stops by itself after --seconds or --connections, whichever comes
first (and on Ctrl-C or SIGTERM). Prints one JSON line when it ends, and a progress line to
stderr every 10 s.
"""
import argparse
import json
import signal
import socket
import sys
import threading
import time

MAX_RATE = 5000
MAX_SECONDS = 3 * 3600
PROGRESS_EVERY_S = 10


def serve(server, stop):
    """Accepts, reads the client's byte and closes first (the TIME_WAIT stays on the server's
    port, so the clients' ephemeral ports are free again at once)."""
    server.settimeout(0.2)
    while not stop.is_set():
        try:
            conn, _ = server.accept()
        except socket.timeout:
            continue
        except OSError:
            return
        with conn:
            conn.settimeout(5)
            try:
                conn.recv(1)
            except OSError:
                pass


def run(rate, seconds, connections):
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1024)
    address = server.getsockname()
    acceptor = threading.Thread(target=serve, args=(server, stop), daemon=True)
    acceptor.start()
    opened = failed = 0
    started = time.monotonic()
    next_progress = started + PROGRESS_EVERY_S
    try:
        while not stop.is_set() and opened + failed < connections:
            now = time.monotonic()
            if now - started >= seconds:
                break
            due = started + (opened + failed) / rate
            if due > now:
                time.sleep(due - now)          # pacing to the rate, not waiting for anything
            try:
                with socket.create_connection(address, timeout=5) as client:
                    client.sendall(b"x")
                    client.recv(1)             # the server's close
                opened += 1
            except OSError:
                failed += 1
            if now >= next_progress:
                print("loopback_load: %d connections in %.0f s" % (opened, now - started), file=sys.stderr,
                      flush=True)
                next_progress += PROGRESS_EVERY_S
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        server.close()
        acceptor.join(5)
    elapsed = time.monotonic() - started
    print(json.dumps({"connections": opened, "failed": failed, "seconds": round(elapsed, 1),
                      "per_second": round(opened / elapsed) if elapsed else 0}), flush=True)
    return 0 if failed == 0 else 1


def bounded(low, high):
    def parse(text):
        value = float(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError("must be between %g and %g" % (low, high))
        return value
    return parse


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=bounded(1, MAX_RATE), default=1000, help="connections per second")
    parser.add_argument("--seconds", type=bounded(0.1, MAX_SECONDS), default=600)
    parser.add_argument("--connections", type=int, default=10 ** 7, help="stop after this many")
    options = parser.parse_args(argv)
    return run(options.rate, options.seconds, options.connections)


if __name__ == "__main__":
    sys.exit(main())
