"""A consumer for the store's tests: reads the DSN from stdin, feeds HISTORY (store_history.py)
through Ingest, all of its PARTITIONS (what the store already has is dropped by Ingest), committing every COMMIT_EVERY
messages. With STOP_AFTER > 0 it prints "fed N" after that many messages (uncommitted ones
included) and waits to be killed; else it checks silence, commits and prints "done".
Usage: ingest_child.py HISTORY RULES COMMIT_EVERY STOP_AFTER PARTITIONS"""
import json
import sys

from host_sim.cloud.alerts.rules import load_rules
from host_sim.cloud.alerts.sources import StoredMessage
from host_sim.cloud.ingest import Ingest
from host_sim.cloud.store import open_store


def main(history, rules, commit_every, stop_after, partitions):
    dsn = sys.stdin.readline().strip()
    ingest = Ingest(open_store(dsn), load_rules(rules), on_skip=lambda line: print(line, file=sys.stderr))
    wanted = [int(p) for p in partitions.split(",")]
    ingest.positions("hub", wanted)
    fed = 0
    with open(history) as f:
        for line in f:
            partition, offset, device, arrival, properties, body = json.loads(line)
            if partition not in wanted:
                continue   # from its start, like a redelivery: Ingest drops what the store has
            if device is None:
                ingest.skip("hub", partition, offset, "no device")
            else:
                ingest.feed("hub", partition, offset,
                            StoredMessage(offset, device, arrival, properties, body.encode()))
            fed += 1
            if fed % int(commit_every) == 0:
                ingest.commit()
            if fed == int(stop_after):
                print("fed %d" % fed, flush=True)
                sys.stdin.read()   # until the test kills this process
                return
    ingest.check_silence()
    ingest.commit()
    ingest.close()
    print("done", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
