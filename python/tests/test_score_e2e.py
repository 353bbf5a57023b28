"""`dktscore score` end to end, read back by real consumers (pyarrow, DuckDB) and
compared with Python TensorFlow on every student of the bundled test split."""
import json
import subprocess

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.ipc
import pyarrow.parquet as pq
import pytest

from dkt import data, export

from conftest import ROOT

DKTSCORE = ROOT / "bin" / "dktscore"
NUM_SKILLS = 124


def score(*args):
    if not DKTSCORE.exists():
        pytest.fail(f"{DKTSCORE} missing: run `make build` (make test does)")
    done = subprocess.run([str(DKTSCORE), "score", "--model", str(ROOT / "models/dkt"), *map(str, args)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    return done.stdout


def summary_value(stdout, key):
    for line in stdout.splitlines():
        for field in line.split():
            if field.startswith(key + "="):
                return float(field.split("=", 1)[1])
    raise AssertionError(f"{key}= not in summary:\n{stdout}")


@pytest.fixture(scope="module")
def reference(bundled_model, test_split):
    """Every student run alone and unpadded through Python TF."""
    students = data.read_dkt3(test_split)
    predictor = export.Predictor(bundled_model)
    mastery, labels, scores = {}, [], []
    for i, s in enumerate(students):
        pred = predictor.predict(data.pad_batch([s], NUM_SKILLS))[0]
        n = len(s.skills)
        mastery[str(i)] = (n, pred[n - 1])
        labels.append(s.correct[1:])
        scores.append(pred[np.arange(n - 1), s.skills[1:]])
    predictor.close()
    return mastery, data.auc(np.concatenate(labels), np.concatenate(scores))


@pytest.fixture(scope="module")
def outputs(tmp_path_factory, test_split):
    out = tmp_path_factory.mktemp("score")
    parquet_summary = score("--input", test_split, "--output", out / "mastery.parquet", "--quiet")
    score("--input", test_split, "--output", out / "mastery.arrow", "--quiet")
    return out, parquet_summary


def check_rows(table, reference):
    mastery, _ = reference
    assert table.num_rows == len(mastery)
    ids = table.column("student_id").to_pylist()
    assert sorted(ids) == sorted(mastery)
    seq_len = table.column("seq_len").to_pylist()
    values = np.asarray(table.column("mastery").combine_chunks().flatten()).reshape(-1, NUM_SKILLS)
    lengths_seen = set()
    for row, sid in enumerate(ids):
        n, expected = mastery[sid]
        assert seq_len[row] == n, sid
        np.testing.assert_allclose(values[row], expected, atol=1e-5, rtol=0, err_msg=f"student {sid}")
        lengths_seen.add(n)
    # the acceptance covers the extremes: length-1 students and thousands of steps
    assert 1 in lengths_seen and max(lengths_seen) >= 8000


def test_parquet_matches_python_tf_for_every_student(outputs, reference):
    out, _ = outputs
    table = pq.read_table(out / "mastery.parquet")
    schema = table.schema
    assert schema.names == ["student_id", "seq_len", "mastery", "window_start", "model_version", "scored_at"]
    assert schema.field("mastery").type.list_size == NUM_SKILLS
    assert schema.field("mastery").type.value_type == pa.float32()
    assert schema.field("scored_at").type == pa.timestamp("us", tz="UTC")
    assert set(table.column("model_version").to_pylist()) == {"dkt/1"}
    assert set(table.column("window_start").to_pylist()) == {0}
    check_rows(table, reference)


def test_arrow_file_matches_python_tf_for_every_student(outputs, reference):
    out, _ = outputs
    with pa.ipc.open_file(out / "mastery.arrow") as reader:
        table = reader.read_all()
    check_rows(table, reference)


def test_duckdb_reads_both_outputs(outputs, reference):
    out, _ = outputs
    mastery, _ = reference
    con = duckdb.connect()
    rows = con.execute(f"select count(*), sum(seq_len), min(seq_len), max(len(mastery)) "
                   f"from read_parquet('{out / 'mastery.parquet'}')").fetchone()
    assert rows == (856, 117567, 1, NUM_SKILLS)
    # one value spot-checked through SQL: skill 5's mastery of student "0"
    got = con.execute(f"select mastery[6] from read_parquet('{out / 'mastery.parquet'}') where student_id = '0'").fetchone()[0]
    assert abs(got - float(mastery["0"][1][5])) < 1e-5
    arrow_table = pa.ipc.open_file(out / "mastery.arrow").read_all()
    assert con.execute("select count(*), sum(seq_len) from arrow_table").fetchone() == (856, 117567)


def test_summary_reports_auc_and_padding(outputs, reference):
    _, stdout = outputs
    _, expected_auc = reference
    assert summary_value(stdout, "students") == 856
    assert summary_value(stdout, "interactions") == 117567
    assert summary_value(stdout, "rejected") == 0
    assert abs(summary_value(stdout, "auc") - expected_auc) < 5e-4
    assert summary_value(stdout, "padding_efficiency") >= 1 / 1.05


def test_trajectory_and_window(tmp_path, test_split, reference):
    mastery, _ = reference
    students = data.read_dkt3(test_split)
    sample = tmp_path / "sample.jsonl"
    picked = [0, 1, 2, 3, 4]
    with open(sample, "w") as f:
        for i in picked:
            f.write(json.dumps({"student_id": str(i), "skills": students[i].skills.tolist(),
                                "correct": students[i].correct.tolist()}) + "\n")
    score("--input", sample, "--output", tmp_path / "t.parquet", "--trajectory", "--quiet")
    steps = pq.read_table(tmp_path / "t.trajectory.parquet")
    assert steps.num_rows == sum(len(students[i].skills) for i in picked)
    assert steps.schema.names[:4] == ["student_id", "step", "skill_id", "correct"]
    # the last step's trajectory row is the student's mastery
    for i in picked:
        rows = steps.filter(pa.compute.equal(steps["student_id"], str(i)))
        last = rows.filter(pa.compute.equal(rows["step"], len(students[i].skills) - 1))
        np.testing.assert_allclose(np.asarray(last["mastery"][0].as_py()), mastery[str(i)][1], atol=1e-5)
        assert rows["skill_id"].to_pylist() == students[i].skills.tolist()

    # --max-steps keeps the last N interactions and says where the window starts
    score("--input", sample, "--output", tmp_path / "w.parquet", "--max-steps", "5", "--quiet")
    windowed = pq.read_table(tmp_path / "w.parquet").to_pylist()
    for row in windowed:
        n = len(students[int(row["student_id"])].skills)
        assert row["seq_len"] == min(n, 5)
        assert row["window_start"] == max(0, n - 5)


def test_bad_records_go_to_the_rejects_file_and_the_rest_is_scored(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([
        '{"student_id": "ok1", "skills": [1, 2, 3], "correct": [1, 0, 1]}',
        '{"student_id": "range", "skills": [1, 124], "correct": [1, 0]}',
        '{"student_id": "flag", "skills": [1, 2], "correct": [1, 2]}',
        '{"student_id": "mismatch", "skills": [1, 2], "correct": [1]}',
        '{"student_id": "empty", "skills": [], "correct": []}',
        'this is not json',
        '{"student_id": "ok2", "skills": [7], "correct": [0]}',
    ]) + "\n")
    stdout = score("--input", bad, "--output", tmp_path / "bad.parquet", "--quiet")
    assert summary_value(stdout, "students") == 2
    assert summary_value(stdout, "rejected") == 5
    rejects = [json.loads(line) for line in open(tmp_path / "bad.parquet.rejects.jsonl")]
    assert [r["line"] for r in rejects] == [2, 3, 4, 5, 6]
    assert all(r["reason"] for r in rejects)
    assert sorted(pq.read_table(tmp_path / "bad.parquet")["student_id"].to_pylist()) == ["ok1", "ok2"]


def test_unreadable_input_is_one_clear_error(tmp_path):
    missing = tmp_path / "nope.csv"
    done = subprocess.run([str(DKTSCORE), "score", "--model", str(ROOT / "models/dkt"), "--input", str(missing),
                           "--output", str(tmp_path / "o.parquet")], capture_output=True, text=True)
    assert done.returncode != 0
    assert str(missing) in done.stderr
    done = subprocess.run([str(DKTSCORE), "inspect", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode != 0
    # libtensorflow prints CUDA-registration noise while it loads, before main;
    # dktscore's own report is one line naming the path.
    ours = [line for line in done.stderr.splitlines() if line.startswith("dktscore")]
    assert len(ours) == 1 and str(tmp_path) in ours[0], done.stderr
