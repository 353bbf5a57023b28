"""Soak: `dktscore serve` for SOAK_MINUTES (default 12) through a Kafka broker of its own, with
sequence and event traffic at once, every worker killed with SIGKILL once a minute (and restarted),
and the broker killed with SIGKILL and restarted once (SOAK_BROKER_STOP=sigterm stops it cleanly
instead). At the end every input must have its result, and the event-mode
state changelogs must equal a fresh `score --emit-state` of the same histories.

    make soak                          # or: SOAK_MINUTES=3 .venv/bin/python bench/soak.py

Four workers, each with its own consumer group, read the same two input topics:

    sequences at-least-once, sequences exactly-once   (input: one JSON sequence record per message)
    events at-least-once,    events exactly-once      (input: one JSON event per message)

Checks (the summary prints each with its counts, then PASS or FAIL; the exit status is 0 on PASS):
  - every input offset has a result in each worker's output topic (exactly-once: read_committed);
  - exactly-once: no input has two results;
  - at-least-once: an input has two results only if its offset lies in a redelivery window: at or
    after the group's committed offset when a worker was killed (or the broker stopped), and before
    the input's end then (README "Delivery": inputs in flight at a crash are scored again);
    an event's repeated results carry the same history length (an event is never applied twice
    to a state);
  - nothing is dead-lettered (all input is valid);
  - each changelog's last state per student equals `score --emit-state` of the student's produced
    history (same history length, state within 1e-5).

The broker runs on SOAK_KAFKA_PORT (default 19392) and SOAK_KAFKA_CONTROLLER_PORT (19393) with
its own run dir (.cache/kafka/run/<port>), so the shared broker on 9092 is never touched; it is
stopped at the end. Logs and the run's files: out/soak/<run id>/.
"""
import argparse
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.ipc
import pyarrow.parquet as pq
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))
from dkt import data  # noqa: E402

DKTSCORE = ROOT / "bin" / "dktscore"
KAFKA_LOCAL = ROOT / "scripts" / "kafka-local"
PARTITIONS = 3
STATE_ATOL = 1e-5
HOST = "127.0.0.1"


def log(message):
    print(f"{time.strftime('%H:%M:%S')} soak: {message}", flush=True)


class Broker:
    """scripts/kafka-local on the soak's own ports."""

    def __init__(self, port, controller_port):
        self.port = port
        self.env = dict(os.environ, KAFKA_PORT=str(port), KAFKA_CONTROLLER_PORT=str(controller_port),
                        KAFKA_SECURITY="plaintext")
        self.brokers = f"{HOST}:{port}"

    def run(self, command):
        subprocess.run([str(KAFKA_LOCAL), command], env=self.env, check=True, timeout=400)

    def start(self):
        self.run("start")

    def stop(self):
        self.run("stop")

    def crash(self):
        """SIGKILL, as a crashed or OOM-killed broker dies."""
        pidfile = ROOT / ".cache" / "kafka" / "run" / str(self.port) / "kafka.pid"
        pid = int(pidfile.read_text())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().replace(b"\0", b" ").decode()
        if "kafka.Kafka" not in cmdline or f"/run/{self.port}/" not in cmdline:
            raise RuntimeError(f"{pidfile} names pid {pid}, which is not this soak's broker")
        os.kill(pid, signal.SIGKILL)
        while os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/stat").read().split()[2] != "Z":
            time.sleep(0.2)
        # kafka-local start takes a pid file that is already there for the new broker's and
        # would then see that (dead) pid exit during startup.
        pidfile.unlink()


class Worker:
    """One `dktscore serve` configuration; start() runs a new process of it, kill() sends SIGKILL."""

    def __init__(self, name, run_dir, brokers, env):
        self.name, self.run_dir, self.brokers = name, run_dir, brokers
        self.env = dict(os.environ, DKTSCORE_KAFKA_BROKERS=brokers, DKTSCORE_MODEL=str(ROOT / "models/dkt"),
                        DKTSCORE_SESSIONS="1", DKTSCORE_THREADS="1", DKTSCORE_MAX_POLL_RECORDS="100",
                        DKTSCORE_LOG_LEVEL="info", TF_CPP_MIN_LOG_LEVEL="2", **env)
        self.group = env["DKTSCORE_KAFKA_GROUP"]
        self.input = env["DKTSCORE_KAFKA_INPUT_TOPIC"]
        self.proc, self.starts, self.kills, self.port = None, 0, 0, None
        self.max_rss = 0

    def start(self):
        self.port = free_port()
        self.starts += 1
        self.log = open(self.run_dir / f"{self.name}-{self.starts}.log", "w")
        self.proc = subprocess.Popen([str(DKTSCORE), "serve"], env=dict(self.env, DKTSCORE_HTTP_ADDR=f"{HOST}:{self.port}"),
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self.kills += 1

    def stop(self, timeout=90):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
                return "did not stop on SIGTERM"
        return None if self.proc.returncode == 0 else f"exited {self.proc.returncode} on SIGTERM"

    def sample_rss(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        self.max_rss = max(self.max_rss, int(line.split()[1]) * 1024)
        except (FileNotFoundError, ProcessLookupError):
            pass


def free_port():
    import socket
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def committed_and_ends(brokers, group, topic):
    """{partition: (the group's committed offset (0 if none), the log end offset)} now."""
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": group, "enable.auto.commit": False})
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        committed = {tp.partition: max(tp.offset, 0) for tp in consumer.committed(tps, timeout=30)}
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in range(PARTITIONS)}
    finally:
        consumer.close()
    return {p: (committed[p], ends[p]) for p in range(PARTITIONS)}


class Traffic:
    """Produces sequence records and events at steady rates, and remembers where each went."""

    def __init__(self, brokers, seq_topic, ev_topic, seq_rate, ev_rate):
        students = data.read_dkt3(ROOT / "data/assistments/builder_test.csv")
        self.sequences = [(f"s{i}".encode(), json.dumps({"student_id": f"s{i}", "skills": s.skills.tolist(),
                                                          "correct": s.correct.tolist()}).encode())
                          for i, s in enumerate(students)]
        # Events: the students' interactions interleaved round-robin, as a live platform emits them;
        # after the last one the students start again as new students (s7~1, ...).
        self.students = students
        self.events = [(i, t) for t in range(max(len(s.skills) for s in students))
                       for i, s in enumerate(students) if t < len(s.skills)]
        self.seq_topic, self.ev_topic, self.seq_rate, self.ev_rate = seq_topic, ev_topic, seq_rate, ev_rate
        # message.timeout.ms: ride out the broker restart instead of failing deliveries.
        self.producer = Producer({"bootstrap.servers": brokers, "enable.idempotence": True, "linger.ms": 20,
                                  "message.timeout.ms": 600000, "log_level": 2})
        self.histories = {}  # event student id -> ([skills], [correct]) in production order
        self.produced = {"sequences": 0, "events": 0}
        self.failed = []
        self.stopped = threading.Event()

    def delivered(self, err, _msg):
        if err is not None:
            self.failed.append(str(err))

    def produce_one_sequence(self, n):
        key, value = self.sequences[n % len(self.sequences)]
        self.producer.produce(self.seq_topic, value=value, key=key, on_delivery=self.delivered)

    def produce_one_event(self, n):
        i, t = self.events[n % len(self.events)]
        sid = f"s{i}" if n < len(self.events) else f"s{i}~{n // len(self.events)}"
        skill, correct = int(self.students[i].skills[t]), int(self.students[i].correct[t])
        history = self.histories.setdefault(sid, ([], []))
        history[0].append(skill)
        history[1].append(correct)
        value = json.dumps({"student_id": sid, "skill_id": skill, "correct": correct, "ts": 1700000000 + n}).encode()
        self.producer.produce(self.ev_topic, value=value, key=sid.encode(), on_delivery=self.delivered)

    def run(self):
        started = time.time()
        while not self.stopped.is_set():
            elapsed = time.time() - started
            while self.produced["sequences"] < elapsed * self.seq_rate:
                self.produce_one_sequence(self.produced["sequences"])
                self.produced["sequences"] += 1
            while self.produced["events"] < elapsed * self.ev_rate:
                self.produce_one_event(self.produced["events"])
                self.produced["events"] += 1
            self.producer.poll(0.1)

    def finish(self):
        self.stopped.set()
        left = self.producer.flush(600)
        if left or self.failed:
            raise RuntimeError(f"the soak's producer could not deliver {left} messages: {self.failed[:3]}")


def read_topic(brokers, topic, read_committed, idle=5, timeout=600):
    """Every message of topic, read until nothing new came for idle seconds."""
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": f"soak-reader-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "isolation.level": "read_committed" if read_committed else "read_uncommitted"})
    consumer.subscribe([topic])
    messages, last, deadline = [], time.time(), time.time() + timeout
    try:
        while time.time() - last < idle and time.time() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                raise RuntimeError(f"reading {topic}: {msg.error()}")
            messages.append(msg)
            last = time.time()
    finally:
        consumer.close()
    return messages


def result_rows(messages, columns):
    rows = {c: [] for c in columns}
    for msg in messages:
        table = pa.ipc.open_stream(msg.value()).read_all()
        for c in columns:
            rows[c].extend(table.column(c).to_pylist())
    return rows


def end_offsets(brokers, topic):
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": f"soak-ends-{uuid.uuid4().hex[:8]}"})
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in range(PARTITIONS)}
    finally:
        consumer.close()


def wait_for_results(brokers, worker, out_topic, read_committed, timeout):
    """Reads out_topic until every input offset of the worker has a result (or timeout)."""
    ends = end_offsets(brokers, worker.input)
    want = sum(ends.values())
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": f"soak-wait-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "isolation.level": "read_committed" if read_committed else "read_uncommitted"})
    consumer.subscribe([out_topic])
    seen, deadline = set(), time.time() + timeout
    try:
        while len(seen) < want and time.time() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            table = pa.ipc.open_stream(msg.value()).read_all()
            seen.update(zip(table.column("source_partition").to_pylist(), table.column("source_offset").to_pylist()))
    finally:
        consumer.close()
    return len(seen), want


def decode_state(value):
    """A changelog value (state/record.go's wire format, version 1): (events, state)."""
    assert value[:4] == b"DKTS" and value[4] == 1, "not a version-1 changelog record"
    events = int.from_bytes(value[17:25], "little", signed=True)
    version_len = int.from_bytes(value[25:27], "little")
    at = 27 + version_len
    n = int.from_bytes(value[at:at + 4], "little")
    return events, np.frombuffer(value[at + 4:at + 4 + 4 * n], dtype="<f4")


def emitted_states(run_dir, histories):
    """`score --emit-state` of the histories: {student_id: (events, state)}."""
    source = run_dir / "histories.jsonl"
    with open(source, "w") as f:
        for sid, (skills, correct) in histories.items():
            f.write(json.dumps({"student_id": sid, "skills": skills, "correct": correct}) + "\n")
    states = run_dir / "states.parquet"
    done = subprocess.run([str(DKTSCORE), "score", "--model", str(ROOT / "models/dkt"), "--input", str(source),
                           "--output", str(run_dir / "histories.parquet"), "--emit-state", str(states), "--quiet"],
                          capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"score --emit-state of the produced histories failed: {done.stderr[-2000:]}")
    table = pq.read_table(states).to_pydict()
    return {sid: (events, np.asarray(state, dtype=np.float32))
            for sid, events, state in zip(table["student_id"], table["events"], table["state"])}


class Check:
    def __init__(self):
        self.lines, self.ok = [], True

    def __call__(self, passed, what):
        self.ok &= bool(passed)
        self.lines.append(f"  [{'ok' if passed else 'FAIL'}] {what}")


def check_results(check, brokers, worker, out_topic, exactly_once, windows, events_mode):
    ends = end_offsets(brokers, worker.input)
    columns = ["source_partition", "source_offset"] + (["events"] if events_mode else [])
    rows = result_rows(read_topic(brokers, out_topic, read_committed=exactly_once), columns)
    results = {}
    for i, key in enumerate(zip(rows["source_partition"], rows["source_offset"])):
        results.setdefault(key, []).append(rows["events"][i] if events_mode else None)
    inputs = sum(ends.values())
    missing = sum(1 for p, end in ends.items() for o in range(end) if (p, o) not in results)
    duplicates = {key: r for key, r in results.items() if len(r) > 1}
    extra = sum(len(r) - 1 for r in duplicates.values())
    check(missing == 0, f"{worker.name}: {inputs} inputs, {len(rows['source_offset'])} results, {missing} inputs "
                        f"without a result")
    if exactly_once:
        check(extra == 0, f"{worker.name}: {extra} duplicate results (read_committed; must be 0)")
    else:
        outside = [key for key in duplicates
                   if not any(w[key[0]][0] <= key[1] < w[key[0]][1] for w in windows[worker.name])]
        check(not outside, f"{worker.name}: {extra} duplicate results of {len(duplicates)} inputs, "
                           f"{len(outside)} outside the {len(windows[worker.name])} redelivery windows"
                           + (f" (e.g. {outside[:3]})" if outside else ""))
        if events_mode:
            doubled = [key for key, r in duplicates.items() if len(set(r)) > 1]
            check(not doubled, f"{worker.name}: {len(doubled)} events whose repeated results differ in history "
                               "length (an event applied twice)")


def check_changelog(check, brokers, name, changelog, exactly_once, want):
    latest = {}
    for msg in read_topic(brokers, changelog, read_committed=exactly_once):
        if msg.value():
            latest[msg.key().decode()] = decode_state(msg.value())  # one partition per key: the last one wins
    wrong_events = [sid for sid, (events, _) in want.items() if sid not in latest or latest[sid][0] != events]
    worst = max((float(np.max(np.abs(latest[sid][1] - state))) for sid, (_, state) in want.items() if sid in latest),
                default=float("inf"))
    check(not wrong_events and len(latest) == len(want),
          f"{name}: changelog holds {len(latest)} students, {len(want)} produced, {len(wrong_events)} with another "
          f"history length than produced")
    check(worst <= STATE_ATOL, f"{name}: largest |changelog state − score --emit-state| {worst:.2e} "
                               f"(tolerance {STATE_ATOL:g})")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", "12")))
    p.add_argument("--sequence-rate", type=float, default=10, help="sequence records per second")
    p.add_argument("--event-rate", type=float, default=100, help="events per second")
    p.add_argument("--kill-every", type=float, default=60, help="seconds between SIGKILLs of each worker")
    p.add_argument("--broker-stop", choices=["sigkill", "sigterm"], default=os.environ.get("SOAK_BROKER_STOP", "sigkill"),
                   help="how the broker is stopped for its restart (README: a single broker stopped with SIGTERM "
                        "while a transaction commits can leave it hanging)")
    args = p.parse_args()
    if not DKTSCORE.exists():
        sys.exit(f"soak: {DKTSCORE} is missing; build it first (make build)")
    run = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    run_dir = ROOT / "out" / "soak" / run
    run_dir.mkdir(parents=True)
    broker = Broker(int(os.environ.get("SOAK_KAFKA_PORT", "19392")),
                    int(os.environ.get("SOAK_KAFKA_CONTROLLER_PORT", "19393")))
    duration = args.minutes * 60
    log(f"run {run}: {args.minutes:g} min, broker {broker.brokers}, files in {run_dir.relative_to(ROOT)}")
    broker.start()
    workers = []
    try:
        topics = {t: f"soak-{t}-{run}" for t in ("seq-in", "ev-in", "seq-out-alo", "seq-out-eos", "ev-out-alo", "ev-out-eos",
                                                 "seq-dlq", "ev-dlq")}
        admin = AdminClient({"bootstrap.servers": broker.brokers})
        for f in admin.create_topics([NewTopic(t, num_partitions=PARTITIONS, replication_factor=1)
                                      for t in topics.values()]).values():
            f.result(timeout=60)
        outputs, changelogs = {}, {}
        for mode, short in (("sequences", "seq"), ("events", "ev")):
            for delivery, d in (("at-least-once", "alo"), ("exactly-once", "eos")):
                name = f"{short}-{d}"
                env = dict(DKTSCORE_KAFKA_INPUT_TOPIC=topics[f"{short}-in"],
                           DKTSCORE_KAFKA_OUTPUT_TOPIC=topics[f"{short}-out-{d}"],
                           DKTSCORE_KAFKA_DEAD_LETTER_TOPIC=topics[f"{short}-dlq"],
                           DKTSCORE_KAFKA_GROUP=f"soak-{name}-{run}", DKTSCORE_DELIVERY=delivery, DKTSCORE_MODE=mode)
                if delivery == "exactly-once":
                    # Stable per worker: a restarted worker fences its killed predecessor's open
                    # transaction at once instead of leaving it to the transaction timeout.
                    env["DKTSCORE_KAFKA_TRANSACTIONAL_ID"] = f"soak-{name}-{run}"
                if mode == "events":
                    changelogs[name] = f"soak-state-{d}-{run}"
                    env.update(DKTSCORE_KAFKA_CHANGELOG_TOPIC=changelogs[name], DKTSCORE_MODEL_VERSION="1",
                               DKTSCORE_CREATE_TOPICS_PARTITIONS=str(PARTITIONS))
                outputs[name] = topics[f"{short}-out-{d}"]
                workers.append(Worker(name, run_dir, broker.brokers, env))
        for w in workers:
            w.start()
        for w in workers:
            wait_ready(w)
        log("4 workers ready: sequences and events, at-least-once and exactly-once")

        traffic = Traffic(broker.brokers, topics["seq-in"], topics["ev-in"], args.sequence_rate, args.event_rate)
        producer = threading.Thread(target=traffic.run, daemon=True)
        started = time.time()
        producer.start()
        # The chaos plan: each worker killed once per kill_every (staggered, so kills land at
        # different points of each other's work), none in the last minute; the broker restarted
        # once, half way.
        plan = sorted([(k * args.kill_every + i * args.kill_every / len(workers), "kill", w)
                       for k in range(1, int(duration // args.kill_every) + 1) for i, w in enumerate(workers)
                       if k * args.kill_every + i * args.kill_every / len(workers) < duration - 30]
                      + [(duration / 2 + 7, "broker", None)], key=lambda e: e[0])
        windows = {w.name: [] for w in workers}
        for at, action, w in plan:
            while time.time() - started < at:
                for x in workers:
                    x.sample_rss()
                time.sleep(min(0.5, max(0.0, at - (time.time() - started))))
            if action == "kill":
                w.kill()
                if w.env["DKTSCORE_DELIVERY"] == "at-least-once":
                    windows[w.name].append(committed_and_ends(broker.brokers, w.group, w.input))
                w.start()
                log(f"kill -9 {w.name} (kill {w.kills}), restarted")
            else:
                alo = [x for x in workers if x.env["DKTSCORE_DELIVERY"] == "at-least-once"]
                before = {x.name: committed_and_ends(broker.brokers, x.group, x.input) for x in alo}
                if args.broker_stop == "sigkill":
                    log("kill -9 the broker")
                    broker.crash()
                else:
                    log("stopping the broker (SIGTERM)")
                    broker.stop()
                time.sleep(5)
                broker.start()
                log("broker restarted")
                for x in alo:
                    after = committed_and_ends(broker.brokers, x.group, x.input)
                    windows[x.name].append({p: (before[x.name][p][0], after[p][1]) for p in range(PARTITIONS)})
        while time.time() - started < duration:
            for x in workers:
                x.sample_rss()
            time.sleep(0.5)
        traffic.finish()
        log(f"produced {traffic.produced['sequences']} sequence records and {traffic.produced['events']} events "
            f"in {time.time() - started:.0f} s; waiting for every result")
        for w in workers:
            exactly = w.env["DKTSCORE_DELIVERY"] == "exactly-once"
            have, want = wait_for_results(broker.brokers, w, outputs[w.name], exactly, timeout=300)
            log(f"{w.name}: {have} of {want} inputs have a result")
        stop_problems = {w.name: w.stop() for w in workers}

        check = Check()
        for w in workers:
            check(w.kills > 0 or duration < 90, f"{w.name}: killed {w.kills} times, started {w.starts} times, "
                                                f"RSS max {w.max_rss / 2**20:.0f} MiB")
            check(stop_problems[w.name] is None, f"{w.name}: SIGTERM at the end: {stop_problems[w.name] or 'exit 0'}")
            check_results(check, broker.brokers, w, outputs[w.name], w.env["DKTSCORE_DELIVERY"] == "exactly-once",
                          windows, w.env["DKTSCORE_MODE"] == "events")
        for dlq in ("seq-dlq", "ev-dlq"):
            dead = sum(end_offsets(broker.brokers, topics[dlq]).values())
            check(dead == 0, f"{dlq}: {dead} dead letters (all input is valid)")
        want = emitted_states(run_dir, traffic.histories)
        for name, changelog in changelogs.items():
            check_changelog(check, broker.brokers, name, changelog, name.endswith("eos"), want)
        print(f"\nsoak {run}: {args.minutes:g} min, {traffic.produced['sequences']} sequence records, "
              f"{traffic.produced['events']} events of {len(traffic.histories)} students, "
              f"{sum(w.kills for w in workers)} kill -9 of a worker, 1 broker restart ({args.broker_stop})")
        print("\n".join(check.lines))
        print(f"soak: {'PASS' if check.ok else 'FAIL'} (logs in {run_dir.relative_to(ROOT)})")
        return 0 if check.ok else 1
    finally:
        for w in workers:
            if w.proc and w.proc.poll() is None:
                w.proc.kill()
                w.proc.wait(30)
        broker.stop()


def wait_ready(worker, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if worker.proc.poll() is not None:
            raise RuntimeError(f"{worker.name} exited with {worker.proc.returncode}; see {worker.log.name}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{worker.port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{worker.name} not ready in {timeout} s; see {worker.log.name}")


if __name__ == "__main__":
    sys.exit(main())
