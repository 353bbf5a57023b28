"""What the Kafka benchmarks share: a `dktscore serve` process on fresh topics, and the time from the
first produced record to the last result consumed."""
import socket
import subprocess
import time
import urllib.request

import pyarrow as pa
import pyarrow.ipc
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic


def create_topics(brokers, partitions, *topics):
    admin = AdminClient({"bootstrap.servers": brokers})
    for f in admin.create_topics([NewTopic(t, num_partitions=partitions, replication_factor=1) for t in topics]).values():
        f.result(30)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(http, proc, timeout=120):
    """True once serve's /readyz (model loaded, broker reachable) answers 200; False if serve exits or
    the timeout passes first."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://{http}/readyz", timeout=1) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def time_through_serve(dktscore, env, brokers, inp, out, records, read_committed=False):
    """Starts `dktscore serve` with env (which names the topics; DKTSCORE_HTTP_ADDR is set here), waits
    until it is ready and its group has settled, then times producing records ((key, value) pairs) to
    inp until out holds a result row for each. Returns the seconds."""
    http = f"127.0.0.1:{free_port()}"
    serve = subprocess.Popen([dktscore, "serve"], env=dict(env, DKTSCORE_HTTP_ADDR=http),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": f"reader-{out}", "auto.offset.reset": "earliest",
                         "isolation.level": "read_committed" if read_committed else "read_uncommitted"})
    consumer.subscribe([out])
    try:
        if not wait_ready(http, serve):
            raise SystemExit(f"serve not ready (exit status {serve.poll()})")
        time.sleep(3)  # the group joined (and, in event mode, the empty changelog restored) before the clock starts
        producer = Producer({"bootstrap.servers": brokers, "linger.ms": 5, "enable.idempotence": True,
                             "queue.buffering.max.messages": 1000000})
        start = time.perf_counter()
        for i, (key, value) in enumerate(records):
            producer.produce(inp, value=value, key=key)
            if i % 1000 == 0:
                producer.poll(0)
        producer.flush(60)
        seen = 0
        while seen < len(records):
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None:
                seen += pa.ipc.open_stream(msg.value()).read_all().num_rows
        return time.perf_counter() - start
    finally:
        consumer.close()
        serve.terminate()
        serve.wait(60)
