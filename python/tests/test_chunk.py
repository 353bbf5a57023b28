"""The chunk signature: a history cut into chunks, with the LSTM state carried
between them in numpy, gives predict's numbers at every step."""
import numpy as np
import pytest

from dkt import data, export

SKILLS = 124


@pytest.fixture(scope="module")
def predictor(bundled_model):
    p = export.Predictor(bundled_model)
    yield p
    p.close()


@pytest.fixture(scope="module")
def students_and_want(predictor, test_split):
    """A mix of short students and the two longest (8,214 and 6,577 steps), with predict's pred_all."""
    students = data.read_dkt3(test_split)
    longest = sorted(students, key=lambda s: len(s.skills))[-2:]
    picked = students[:10] + longest
    assert max(len(s.skills) for s in picked) == 8214
    return picked, predictor.predict(data.pad_batch(picked, SKILLS))


def run_chunked(predictor, students, size):
    """Scores every student in chunks of at most size steps, all students in one block per round."""
    sig = predictor.signatures["chunk"]
    state_keys = sorted(k for k in sig.inputs if k.startswith("state_"))
    widths = {k: sig.inputs[k].tensor_shape.dim[1].size for k in state_keys}
    rows = len(students)
    state = {k: np.zeros((rows, widths[k]), np.float32) for k in state_keys}
    lengths = [len(s.skills) for s in students]
    mastery = np.zeros((rows, SKILLS), np.float32)
    next_prob = [np.zeros(n, np.float32) for n in lengths]
    pred_all = [np.zeros((n, SKILLS), np.float32) for n in lengths]
    for start in range(0, max(lengths), size):
        skill_id = np.zeros((rows, size), np.int32)
        correct = np.zeros((rows, size), np.int32)
        next_skill = np.zeros((rows, size), np.int32)
        seq_len = np.zeros(rows, np.int32)
        for b, s in enumerate(students):
            n = max(0, min(size, lengths[b] - start))
            # A finished row rides along with padded steps only: its state must not move.
            seq_len[b] = n
            skill_id[b, :n] = s.skills[start:start + n]
            correct[b, :n] = s.correct[start:start + n]
            following = s.skills[start + 1:start + n + 1]
            next_skill[b, :len(following)] = following
        out = predictor.run("chunk", skill_id=skill_id, correct=correct, next_skill=next_skill,
                            sequence_len=seq_len, **state)
        for b in range(rows):
            n = min(size, lengths[b] - start)
            if n <= 0:
                np.testing.assert_array_equal(out["state_h_0"][b], state["state_h_0"][b])
                continue
            next_prob[b][start:start + n] = out["next_prob"][b, :n]
            pred_all[b][start:start + n] = out["pred_all"][b, :n]
            if start + n == lengths[b]:
                mastery[b] = out["mastery"][b]
        state = {k: out[k] for k in state_keys}
    return mastery, next_prob, pred_all


@pytest.mark.parametrize("size", [1, 7, 64, 256])
def test_chunks_with_carried_state_equal_predict(predictor, students_and_want, size):
    students, want = students_and_want
    if size == 1:
        students = students[:4] + students[-1:]  # one step a run: 8,214 runs are enough
        want = np.concatenate([want[:4], want[-1:]])
    mastery, next_prob, pred_all = run_chunked(predictor, students, size)
    for b, s in enumerate(students):
        n = len(s.skills)
        np.testing.assert_allclose(pred_all[b], want[b, :n], atol=1e-5, err_msg=f"student {b} pred_all")
        np.testing.assert_allclose(mastery[b], want[b, n - 1], atol=1e-5, err_msg=f"student {b} mastery")
        # next_prob[t] is pred_all[t] at the skill answered at t+1; the last step has none.
        target = np.asarray(s.skills[1:], np.int64)
        np.testing.assert_allclose(next_prob[b][:-1], want[b, np.arange(n - 1), target], atol=1e-5,
                                   err_msg=f"student {b} next_prob")


def test_chunk_signature_contract(predictor):
    sig = predictor.signatures["chunk"]
    assert sig.method_name == "tensorflow/serving/predict"
    assert set(sig.inputs) == {"skill_id", "correct", "next_skill", "sequence_len", "state_c_0", "state_h_0"}
    assert set(sig.outputs) == {"state_c_0", "state_h_0", "mastery", "next_prob", "pred_all"}
    step = predictor.signatures["step"]
    for key in ("state_c_0", "state_h_0"):
        assert sig.inputs[key].tensor_shape == step.inputs[key].tensor_shape
        assert sig.outputs[key].tensor_shape == step.outputs[key].tensor_shape
