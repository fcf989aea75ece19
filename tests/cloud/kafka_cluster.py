"""librdkafka's mock cluster in a process of its own, for tests and benches across processes.

Run as a program it creates the cluster (a client with test.mock.num.brokers holds it), prints
its bootstrap address on one line and lives until killed or until stdin closes.

    with MockCluster() as cluster:        # starts the program, reads the address
        cluster.bootstrap                 # "127.0.0.1:PORT,..."
        cluster.create_topic("t", 4)

Topics: the mock cluster's controller id names no broker (librdkafka 2.16), so AdminClient's
CreateTopics waits forever for a controller; a topic is created as the mock creates it on first
use, with its default of 4 partitions, and create_topic checks that count.
"""
import os
import socket
import subprocess
import sys

BROKERS = 3
MOCK_PARTITIONS = 4


class MockCluster:
    def __init__(self, brokers=BROKERS):
        self.brokers = brokers
        self.proc = None
        self.bootstrap = None

    def start(self, timeout=30):
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), str(self.brokers)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if not line:
            self.stop()
            raise RuntimeError("the mock cluster did not start (exit %s)" % self.proc.returncode)
        self.bootstrap = line
        return self

    def create_topic(self, topic, partitions=MOCK_PARTITIONS, timeout=30):
        """Creates TOPIC (the mock's first-use creation); returns its partition count."""
        from confluent_kafka import Producer
        if partitions != MOCK_PARTITIONS:
            raise ValueError("the mock cluster creates topics of %d partitions" % MOCK_PARTITIONS)
        producer = Producer({"bootstrap.servers": self.bootstrap, "log_level": 0})
        metadata = producer.list_topics(topic, timeout=timeout)
        return len(metadata.topics[topic].partitions)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def topic_size(bootstrap, topic):
    """Records ever written to TOPIC: the sum of its partitions' high watermarks."""
    from confluent_kafka import Consumer, TopicPartition
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "sizer", "log_level": 0})
    try:
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
                   for p in partitions)
    finally:
        consumer.close()


def dead_address():
    """host:port where nothing listens (a port the kernel just gave and took back)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return "127.0.0.1:%d" % s.getsockname()[1]


def main(brokers):
    from confluent_kafka import Producer
    holder = Producer({"test.mock.num.brokers": int(brokers), "log_level": 0})
    metadata = holder.list_topics(timeout=30)
    print(",".join("%s:%d" % (b.host, b.port) for b in sorted(metadata.brokers.values(),
                                                                 key=lambda b: b.id)), flush=True)
    sys.stdin.read()    # until the test closes stdin or kills this process


if __name__ == "__main__":
    main(*(sys.argv[1:] or [BROKERS]))
