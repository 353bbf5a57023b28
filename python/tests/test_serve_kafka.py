"""`dktscore serve` against a real Kafka broker (scripts/kafka-local), driven and
read by an independent client (confluent-kafka / librdkafka)."""
import json
import os
import subprocess
import time
import urllib.request

import numpy as np
import pyarrow.parquet as pq
import pytest

from dkt import data
from kafka_util import (Serve, consume, consume_all, consume_rows, count_rows, create_topics, ensure_broker, produce, rows_of,
                        sequence_record, unique, ROOT, DKTSCORE)

NUM_SKILLS = 124


@pytest.fixture(scope="module", autouse=True)
def broker():
    ensure_broker()


@pytest.fixture(scope="module")
def students(test_split):
    return data.read_dkt3(test_split)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, students):
    """`dktscore score` on the same records: the mastery every serve result must equal."""
    tmp = tmp_path_factory.mktemp("ref")
    with open(tmp / "students.jsonl", "w") as f:
        for i, s in enumerate(students):
            f.write(sequence_record(f"s{i}", s.skills, s.correct).decode() + "\n")
    subprocess.run([str(DKTSCORE), "score", "--model", str(ROOT / "models/dkt"), "--input", str(tmp / "students.jsonl"),
                    "--output", str(tmp / "ref.parquet"), "--quiet"], check=True, capture_output=True, timeout=600)
    table = pq.read_table(tmp / "ref.parquet").to_pylist()
    return {row["student_id"]: np.asarray(row["mastery"]) for row in table}


def records(students, count):
    """count records cycling through the real students: (student_id, value)."""
    out = []
    for i in range(count):
        s = students[i % len(students)]
        sid = f"s{i % len(students)}"
        out.append((sid, sequence_record(sid, s.skills, s.correct)))
    return out


def topics(name, partitions=3):
    names = unique(f"{name}-in"), unique(f"{name}-out"), unique(f"{name}-dlq")
    create_topics(partitions, *names)
    return names


def offsets_of(rows):
    return [(r["source_topic"], r["source_partition"], r["source_offset"]) for r in rows]


def test_every_record_scored_once_and_equal_to_score(tmp_path, students, reference):
    inp, out, dlq = topics("basic")
    recs = records(students, len(students))
    produce(inp, [v for _, v in recs], keys=[k.encode() for k, _ in recs])
    group = unique("g")
    serve = Serve(tmp_path, inp, out, dlq, group)
    try:
        serve.wait_ready()
        consume_rows(out, len(recs))
        rows = rows_of(consume_all(out))  # everything, duplicates included
        assert len(rows) == len(recs), "each input must give exactly one result"
        assert len(set(offsets_of(rows))) == len(recs)
        for row in rows:
            assert row["source_topic"] == inp
            np.testing.assert_allclose(np.asarray(row["mastery"]), reference[row["student_id"]], atol=1e-5, rtol=0)
        metrics = serve.metrics()
        assert metrics["dktscore_scored_total"] == len(recs)
        assert metrics["dktscore_dead_lettered_total"] == 0
        assert metrics["dktscore_computed_steps_total"] >= metrics["dktscore_real_steps_total"] > 0
    finally:
        assert serve.stop() == 0, serve.read_log()
    assert "stopped after" in serve.read_log()


def distinct_and_duplicates(rows):
    offsets = offsets_of(rows)
    return len(set(offsets)), len(offsets) - len(set(offsets))


@pytest.mark.parametrize("delivery", ["at-least-once", "exactly-once"])
def test_kill_9_mid_stream_then_restart_loses_nothing(tmp_path, students, delivery):
    inp, out, dlq = topics(f"crash-{delivery[:5]}")
    total = 3 * len(students)
    produce(inp, [v for _, v in records(students, total)])
    group = unique("g")
    read_committed = delivery == "exactly-once"
    first = Serve(tmp_path, inp, out, dlq, group, delivery=delivery, max_poll_records=200)
    first.wait_ready()
    before = consume(out, lambda ms: count_rows(ms) >= total // 4, read_committed=read_committed)
    first.kill()
    second = Serve(tmp_path, inp, out, dlq, group, delivery=delivery, max_poll_records=200)
    try:
        second.wait_ready()
        rows = consume_rows(out, total, read_committed=read_committed)
        rows = rows_of(consume_all(out, read_committed=read_committed)) if read_committed else rows
    finally:
        assert second.stop() == 0, second.read_log()
    distinct, duplicates = distinct_and_duplicates(rows)
    print(f"{delivery}: {count_rows(before)} results before kill -9, {distinct} distinct inputs, {duplicates} duplicates")
    assert distinct == total, "an input has no result"
    if delivery == "exactly-once":
        assert duplicates == 0, "read_committed consumer saw an input twice"
    else:
        # duplicates come only from the window that was in flight at the kill
        assert duplicates < total


def hostile_messages(count):
    kinds = [
        lambda i: b"",
        lambda i: b"{",
        lambda i: b"not json %d" % i,
        lambda i: b"[1, 2, 3]",
        lambda i: json.dumps({"student_id": f"h{i}", "skills": "abc", "correct": [1]}).encode(),
        lambda i: json.dumps({"student_id": f"h{i}", "skills": [1, "x"], "correct": [1, 0]}).encode(),
        lambda i: json.dumps({"student_id": f"h{i}", "skills": [NUM_SKILLS + i], "correct": [1]}).encode(),
        lambda i: json.dumps({"student_id": f"h{i}", "skills": [-1 - i], "correct": [0]}).encode(),
        lambda i: json.dumps({"student_id": f"h{i}", "skills": [1, 2], "correct": [1]}).encode(),
        lambda i: json.dumps({"student_id": f"h{i}", "skills": [1], "correct": [2]}).encode(),
        lambda i: json.dumps({"student_id": f"h{i}", "skills": [], "correct": []}).encode(),
        lambda i: b'{"student_id": "\xff\xfe", "skills": [1], "correct": [1]}',
        lambda i: b"\xff\xfe\xfd" * (i % 7 + 1),
        lambda i: json.dumps({"student_id": f"h{i}", "skills": [1] * 60000, "correct": [1] * 60000}).encode(),
        lambda i: json.dumps({"student_id": f"h{i}", "skills": [1e30], "correct": [1]}).encode(),
        lambda i: json.dumps({"skills": [1], "correct": [1]}).encode(),
    ]
    return [kinds[i % len(kinds)](i) for i in range(count)]


def test_hostile_messages_go_to_the_dead_letter_topic(tmp_path, students):
    inp, out, dlq = topics("hostile")
    bad = hostile_messages(1000)
    good = [v for _, v in records(students, 200)]
    mixed = []
    for k, g in enumerate(good):  # interleave: 5 bad, then 1 good
        mixed.extend(bad[5 * k:5 * k + 5])
        mixed.append(g)
    produce(inp, mixed)
    serve = Serve(tmp_path, inp, out, dlq, unique("g"), max_message_bytes=100000)
    try:
        serve.wait_ready()
        dead = consume(dlq, lambda ms: len(ms) >= 1000)
        rows = rows_of(consume(out, lambda ms: count_rows(ms) >= 200))
        with urllib.request.urlopen(f"http://127.0.0.1:{serve.port}/healthz", timeout=5) as r:
            assert r.status == 200, "worker must stay alive"
        assert serve.metrics()["dktscore_dead_lettered_total"] == 1000
    finally:
        assert serve.stop() == 0, serve.read_log()
    assert len(rows) == 200
    reasons = set()
    for msg in dead:
        headers = dict(msg.headers())
        assert headers["dktscore-reason"], "every dead letter names its reason"
        assert headers["dktscore-source-topic"].decode() == inp
        reasons.add(headers["dktscore-reason"].decode().split(":")[0][:40])
    # the dead letter keeps the original bytes (cut only when over the size limit)
    originals = {(dict(m.headers())["dktscore-source-partition"], dict(m.headers())["dktscore-source-offset"]): m.value()
                 for m in dead}
    assert len(originals) == 1000
    assert any(v == b"{" for v in originals.values()) and any(v in (b"", None) for v in originals.values())
    print(f"{len(reasons)} distinct reasons, e.g. {sorted(reasons)[:5]}")


def test_two_workers_share_partitions_and_a_rebalance_loses_nothing(tmp_path, students):
    inp, out, dlq = topics("pair", partitions=4)
    total = 4 * len(students)
    produce(inp, [v for _, v in records(students, total)])
    group = unique("g")
    a = Serve(tmp_path, inp, out, dlq, group)
    b = Serve(tmp_path, inp, out, dlq, group)
    try:
        a.wait_ready()
        b.wait_ready()
        # both members get partitions and score from them (a slow model load on a busy machine
        # delays b's join: the bound is generous, the assertion is not)
        deadline = time.time() + 180
        while min(a.metrics()["dktscore_scored_total"], b.metrics()["dktscore_scored_total"]) == 0:
            assert time.time() < deadline, "the partitions were not split between the two workers"
            time.sleep(0.2)
        assert b.stop() == 0, b.read_log()  # rebalance: a takes b's partitions
        rows = consume_rows(out, total)
    finally:
        assert a.stop() == 0, a.read_log()
        b.stop()
    distinct, duplicates = distinct_and_duplicates(rows)
    assert distinct == total
    print(f"two workers: {distinct} inputs, {duplicates} duplicates")


def test_broker_restart_mid_stream_recovers_without_loss(tmp_path, students):
    inp, out, dlq = topics("bounce")
    total = 2 * len(students)
    produce(inp, [v for _, v in records(students, total)])
    serve = Serve(tmp_path, inp, out, dlq, unique("g"))
    kafka_local = str(ROOT / "scripts" / "kafka-local")
    try:
        serve.wait_ready()
        consume(out, lambda ms: count_rows(ms) >= total // 5)
        subprocess.run([kafka_local, "stop"], check=True, timeout=120)
        time.sleep(3)
        assert serve.proc.poll() is None, "the worker must ride out a broker outage"
        subprocess.run([kafka_local, "start"], check=True, timeout=300)
        rows = consume_rows(out, total, timeout=300)
    finally:
        assert serve.stop() == 0, serve.read_log()
    assert len(set(offsets_of(rows))) == total


FAKE_NVIDIA_SMI = """#!/bin/sh
# Two GPUs, as `nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader,nounits` prints them.
echo "0, GPU-11111111-aaaa, Fake H100, 81559"
echo "1, GPU-22222222-bbbb, Fake H100, 81559"
"""


def test_supervisor_runs_one_worker_per_gpu(tmp_path, students):
    """serve --gpus all on a host whose (fake) nvidia-smi lists two GPUs: one child per GPU,
    each scoring on the CPU through soft placement; SIGTERM stops them all."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text(FAKE_NVIDIA_SMI)
    (bin_dir / "nvidia-smi").chmod(0o755)
    inp, out, dlq = topics("gpus", partitions=2)
    produce(inp, [v for _, v in records(students, 200)])
    parent = Serve(tmp_path, inp, out, dlq, unique("g"), gpus="all", gpu_memory_fraction="0.45", sessions=1,
                   path=f"{bin_dir}:{os.environ['PATH']}")
    try:
        parent.wait_ready(timeout=180)
        with urllib.request.urlopen(f"http://127.0.0.1:{parent.port}/readyz", timeout=5) as r:
            report = json.load(r)
        assert [c["name"] for c in report["children"]] == ["gpu0", "gpu1"]
        assert all(c["ready"] and c["labels"]["memory_fraction"] == "0.45" for c in report["children"])
        rows = consume_rows(out, 200)
        assert len({r["source_offset"] for r in rows if r["source_partition"] == 0}) > 0
        # the parent's /metrics carries every child's series, labelled by worker
        deadline = time.time() + 60
        while True:
            metrics = parent.metrics()
            scored = {k: v for k, v in metrics.items() if k.startswith("dktscore_scored_total{")}
            if sum(scored.values()) >= 200 or time.time() > deadline:
                break
            time.sleep(0.2)
        assert set(scored) == {'dktscore_scored_total{worker="gpu0"}', 'dktscore_scored_total{worker="gpu1"}'}, metrics
        assert sum(scored.values()) >= 200, scored  # more when the children's joining rebalance redid in-flight input
    finally:
        assert parent.stop() == 0, parent.read_log()
    log = parent.read_log()
    assert log.count("placement=gpu") == 2, log  # each child logged its placement
