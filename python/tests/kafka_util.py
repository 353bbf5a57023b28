"""Helpers for the serve tests: the project's local broker, a dktscore serve
process, and an independent Kafka client (confluent-kafka / librdkafka)."""
import json
import os
import signal
import socket
import subprocess
import time
import uuid

import pyarrow as pa
import pyarrow.ipc
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import ROOT

BROKERS = os.environ.get("DKTSCORE_KAFKA_BROKERS", "127.0.0.1:9092")
DKTSCORE = ROOT / "bin" / "dktscore"


def ensure_broker():
    """Starts scripts/kafka-local (idempotent) unless a broker is already configured."""
    if "DKTSCORE_KAFKA_BROKERS" not in os.environ:
        subprocess.run([str(ROOT / "scripts" / "kafka-local"), "start"], check=True, timeout=600)


def unique(name):
    return f"{name}-{uuid.uuid4().hex[:8]}"


def create_topics(partitions, *topics):
    admin = AdminClient({"bootstrap.servers": BROKERS})
    futures = admin.create_topics([NewTopic(t, num_partitions=partitions, replication_factor=1) for t in topics])
    for f in futures.values():
        f.result(timeout=30)


def produce(topic, values, keys=None):
    producer = Producer({"bootstrap.servers": BROKERS, "enable.idempotence": True, "linger.ms": 5})
    for i, value in enumerate(values):
        key = keys[i] if keys else None
        producer.produce(topic, value=value, key=key)
        if i % 1000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0, "producer could not deliver every test record"


def sequence_record(student_id, skills, correct):
    return json.dumps({"student_id": student_id, "skills": [int(s) for s in skills],
                       "correct": [int(c) for c in correct]}).encode()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Serve:
    """A `dktscore serve` process configured through DKTSCORE_* variables."""

    def __init__(self, tmp_path, input_topic, output_topic, dlq_topic, group, delivery="at-least-once", **extra):
        self.port = free_port()
        self.env = dict(os.environ, DKTSCORE_KAFKA_BROKERS=BROKERS, DKTSCORE_KAFKA_INPUT_TOPIC=input_topic,
                        DKTSCORE_KAFKA_OUTPUT_TOPIC=output_topic, DKTSCORE_KAFKA_DEAD_LETTER_TOPIC=dlq_topic,
                        DKTSCORE_KAFKA_GROUP=group, DKTSCORE_DELIVERY=delivery, DKTSCORE_MODEL=str(ROOT / "models/dkt"),
                        DKTSCORE_HTTP_ADDR=f"127.0.0.1:{self.port}", TF_CPP_MIN_LOG_LEVEL="2")
        path = extra.pop("path", None)
        self.env.update({f"DKTSCORE_{k.upper()}": str(v) for k, v in extra.items()})
        if path:
            self.env["PATH"] = path
        self.log = open(tmp_path / f"serve-{self.port}.log", "w")
        self.proc = subprocess.Popen([str(DKTSCORE), "serve"], env=self.env, stdout=self.log, stderr=subprocess.STDOUT)

    def metrics(self):
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            text = r.read().decode()
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    def wait_ready(self, timeout=120):
        import urllib.request
        deadline = time.time() + timeout
        while time.time() < deadline:
            assert self.proc.poll() is None, f"serve exited with {self.proc.returncode}: {self.read_log()}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"serve not ready in {timeout}s: {self.read_log()}")

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self, timeout=60):
        """SIGTERM: drain, commit, exit 0."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout)
        return self.proc.returncode

    def read_log(self):
        self.log.flush()
        return open(self.log.name).read()[-3000:]


def consume(topic, until, timeout=180, read_committed=False, group=None):
    """Reads topic from the beginning until until(messages) is true; returns the messages."""
    consumer = Consumer({"bootstrap.servers": BROKERS, "group.id": group or unique("reader"),
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "isolation.level": "read_committed" if read_committed else "read_uncommitted"})
    consumer.subscribe([topic])
    messages = []
    deadline = time.time() + timeout
    try:
        while not until(messages):
            if time.time() > deadline:
                raise AssertionError(f"{topic}: condition not met in {timeout}s after {len(messages)} messages")
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            messages.append(msg)
    finally:
        consumer.close()
    return messages


def rows_of(messages):
    """Decodes Arrow IPC stream messages into row dicts (with the headers checked)."""
    rows = []
    for msg in messages:
        headers = dict(msg.headers() or [])
        assert headers["content-type"] == b"application/vnd.apache.arrow.stream"
        table = pa.ipc.open_stream(msg.value()).read_all()
        assert int(headers["dktscore-rows"]) == table.num_rows
        rows.extend(table.to_pylist())
    return rows


def consume_all(topic, idle=4, timeout=120, read_committed=False):
    """Reads everything in topic: stops once nothing new arrived for idle seconds."""
    last = {"n": -1, "at": time.time()}

    def quiet(messages):
        if len(messages) != last["n"]:
            last["n"], last["at"] = len(messages), time.time()
        return time.time() - last["at"] > idle

    return consume(topic, quiet, timeout=timeout, read_committed=read_committed)


def consume_rows(topic, want_distinct, timeout=240, read_committed=False):
    """Reads result rows until want_distinct different inputs have a result; returns all rows read."""
    rows, seen = [], set()

    def enough(messages):
        while len(rows_consumed) < len(messages):
            new = rows_of([messages[len(rows_consumed)]])
            rows_consumed.append(len(new))
            rows.extend(new)
            seen.update((r["source_topic"], r["source_partition"], r["source_offset"]) for r in new)
        return len(seen) >= want_distinct

    rows_consumed = []
    consume(topic, enough, timeout=timeout, read_committed=read_committed)
    return rows


def count_rows(messages):
    return sum(int(dict(m.headers())["dktscore-rows"]) for m in messages)
