"""`dktscore score --emit-state` against Python TensorFlow: the state written for each student is the
(c, h) that the SavedModel's `step` signature reaches after the student's whole history, read back
with pyarrow."""
import subprocess

import numpy as np
import pyarrow.parquet as pq
import pytest

from dkt import data, export, model

from conftest import ROOT

DKTSCORE = ROOT / "bin" / "dktscore"


def python_final_states(predictor, students):
    """Steps every student through `step` in one batch (finished rows keep stepping on a dummy
    interaction; their state is taken when their history ends). Returns [B, state_size] as
    c_0, h_0, c_1, h_1, ... per row, the layout dktscore writes."""
    sig = predictor.signatures[model.STEP_SIGNATURE]
    layers = sorted(int(k.rsplit("_", 1)[1]) for k in sig.inputs if k.startswith("state_c_"))
    width = {k: sig.inputs[k].tensor_shape.dim[1].size for k in sig.inputs if k.startswith("state_")}
    keys = [key for layer in layers for key in model.state_keys(layer)]
    state = {k: np.zeros((len(students), width[k]), np.float32) for k in keys}
    final = [None] * len(students)
    for t in range(max(len(s.skills) for s in students)):
        skill = np.array([s.skills[t] if t < len(s.skills) else 0 for s in students], np.int32)
        correct = np.array([s.correct[t] if t < len(s.skills) else 0 for s in students], np.int32)
        out = predictor.run(model.STEP_SIGNATURE, skill_id=skill, correct=correct, **state)
        state = {k: out[k] for k in keys}
        for b, s in enumerate(students):
            if t == len(s.skills) - 1:
                final[b] = np.concatenate([state[k][b] for k in keys])
    return np.stack(final)


def test_emitted_states_equal_python_step_over_the_history(tmp_path, test_split, bundled_model):
    if not DKTSCORE.exists():
        pytest.fail(f"{DKTSCORE} missing: run `make build` (make test does)")
    students = data.read_dkt3(test_split)
    longest = sorted(range(len(students)), key=lambda i: len(students[i].skills))[-2:]
    picked = [students[i] for i in list(range(30)) + longest]
    source = tmp_path / "students.csv"
    with open(source, "w") as f:
        for s in picked:
            f.write(f"{len(s.skills)}\n{','.join(map(str, s.skills))}\n{','.join(map(str, s.correct))}\n")
    states_path = tmp_path / "states.parquet"
    done = subprocess.run([str(DKTSCORE), "score", "--model", str(ROOT / "models/dkt"), "--input", str(source),
                           "--output", str(tmp_path / "mastery.parquet"), "--emit-state", str(states_path), "--quiet"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"states={len(picked)} " in done.stdout

    table = pq.read_table(states_path)
    assert table.schema.field("state").type.value_type.bit_width == 32
    rows = {r["student_id"]: r for r in table.to_pylist()}
    assert len(rows) == len(picked)

    predictor = export.Predictor(bundled_model)
    try:
        want = python_final_states(predictor, picked)
    finally:
        predictor.close()
    for i, s in enumerate(picked):
        row = rows[str(i)]  # DKT 3-line student ids are record ordinals
        assert row["events"] == len(s.skills)
        assert row["model_version"] == "dkt/1"
        got = np.array(row["state"], np.float32)
        assert got.shape == want[i].shape
        np.testing.assert_allclose(got, want[i], atol=1e-5, rtol=0,
                                   err_msg=f"student {i} ({len(s.skills)} interactions)")
