"""Model versions while `dktscore serve` consumes from the real broker: a new
version directory is picked up without a restart, and a corrupt one is refused
while the running version keeps serving."""
import argparse
import os
import shutil
import threading
import time

import numpy as np
import pytest

from dkt import data, export, train, upgrade
from kafka_util import Serve, consume_rows, create_topics, ensure_broker, produce, sequence_record, unique, ROOT


@pytest.fixture(scope="module", autouse=True)
def broker():
    ensure_broker()


def add_version(base, version):
    """Copies the bundled model in as a new version, renamed into place at once (as deploy/README.md advises)."""
    incoming = base / f".incoming-{version}"
    shutil.copytree(ROOT / "models" / "dkt" / "1", incoming)
    os.rename(incoming, base / str(version))


def add_retrained_version(base, version):
    """Publishes version with other weights (the bundled model's output bias shifted), so its results
    differ from version 1's and show which weights scored each row, not only the label."""
    weights = upgrade.read_weights(ROOT / "models" / "dkt" / "1")
    scope, num_skills, hidden = upgrade.architecture(weights)
    weights = {name: value + 0.25 if name.endswith("/b") else value for name, value in weights.items()}
    args = argparse.Namespace(seed=42, num_skills=num_skills, hidden=hidden, learning_rate=0.0, scope=scope)
    incoming = base / f".incoming-{version}"
    with train.inference_session(weights, args) as (sess, model):
        export.export_saved_model(sess, model.signatures(), str(incoming))
    os.rename(incoming, base / str(version))


def last_mastery(model_dir, students):
    """Python TF's mastery after each student's last interaction: the reference for one version."""
    predictor = export.Predictor(str(model_dir))
    padded = data.pad_batch(students, 124)
    pred = predictor.predict(padded)
    predictor.close()
    return [pred[b, len(s.skills) - 1] for b, s in enumerate(students)]


def wait_for(condition, what, serve, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} not seen in {timeout}s: {serve.read_log()}")


def test_new_version_served_without_restart_and_corrupt_one_refused(tmp_path, test_split):
    students = data.read_dkt3(test_split)[:100]
    base = tmp_path / "dkt"
    base.mkdir()
    add_version(base, 1)
    inp, out, dlq = unique("reload-in"), unique("reload-out"), unique("reload-dlq")
    create_topics(2, inp, out, dlq)
    serve = Serve(tmp_path, inp, out, dlq, unique("g"), model=base, model_poll_interval="200ms")
    produced = []  # (phase, student_id) in produce order

    def wave(phase, count):
        values, keys = [], []
        for i in range(count):
            s = students[i % len(students)]
            sid = f"{phase}-{i}"
            values.append(sequence_record(sid, s.skills, s.correct))
            keys.append(sid.encode())
            produced.append((phase, sid))
        produce(inp, values, keys)

    try:
        serve.wait_ready()
        metrics = serve.metrics
        assert metrics()['dktscore_model_version_info{version="dkt/1"}'] == 1

        # Records keep flowing while version 2 appears, so the swap happens
        # with batches in flight.
        stop = threading.Event()

        def stream():
            n = 0
            while not stop.is_set():
                wave(f"during{n}", 20)
                n += 1
                time.sleep(0.05)

        wave("v1", 100)
        consume_rows(out, 100)  # version 1 scored all of these before anything changes
        streamer = threading.Thread(target=stream)
        streamer.start()
        try:
            time.sleep(1)
            add_retrained_version(base, 2)
            wait_for(lambda: metrics().get('dktscore_model_version_info{version="dkt/2"}') == 1, "version 2 serving", serve)
            time.sleep(1)
        finally:
            stop.set()
            streamer.join(60)

        # A corrupt version 3: refused, reported, and version 2 keeps serving.
        (base / "3" / "variables").mkdir(parents=True)
        (base / "3" / "saved_model.pb").write_bytes(b"this is not a SavedModel")
        wait_for(lambda: metrics().get('dktscore_model_reloads_total{result="failed"}', 0) >= 1, "refusal of version 3", serve)
        wave("after-corrupt", 100)

        rows = consume_rows(out, len(produced))
        final = metrics()
    finally:
        assert serve.stop() == 0, serve.read_log()

    # Each row equals its version's weights on that student: the label and
    # the weights that scored the row agree.
    reference = {"dkt/1": last_mastery(base / "1", students), "dkt/2": last_mastery(base / "2", students)}
    assert np.abs(reference["dkt/1"][0] - reference["dkt/2"][0]).max() > 1e-3, "the two versions must score apart"
    by_student = {}
    for r in rows:
        by_student.setdefault(r["student_id"], set()).add(r["model_version"])
        want = reference[r["model_version"]][int(r["student_id"].rsplit("-", 1)[1]) % len(students)]
        np.testing.assert_allclose(np.asarray(r["mastery"]), want, atol=1e-5, rtol=0)
    missing = [sid for _, sid in produced if sid not in by_student]
    assert not missing, f"{len(missing)} inputs have no result, e.g. {missing[:3]}"
    versions = [v for vs in by_student.values() for v in vs]
    assert set(versions) == {"dkt/1", "dkt/2"}, set(versions)
    assert all(by_student[sid] == {"dkt/1"} for phase, sid in produced if phase == "v1")
    assert all(by_student[sid] == {"dkt/2"} for phase, sid in produced if phase == "after-corrupt")
    assert final["dktscore_dead_lettered_total"] == 0
    assert final['dktscore_model_reloads_total{result="loaded"}'] == 2  # version 1 at start, then 2
    assert final['dktscore_model_reloads_total{result="failed"}'] == 1  # 3, not retried while unchanged
    assert final['dktscore_model_version_info{version="dkt/2"}'] == 1
    assert "dkt/3" in open(serve.log.name).read(), "the refusal must be logged with the version"
