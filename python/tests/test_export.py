"""The bundled SavedModel presents the origin's predict signature exactly."""
import numpy as np
import tensorflow as tf

from dkt import data, export

CONTRACT = {
    "input_x": (tf.float32, [-1, -1, 248]),
    "target_id": (tf.int32, [-1, -1]),
    "max_steps": (tf.int32, []),
    "sequence_len": (tf.int32, [-1]),
    "keep_prob": (tf.float32, []),
    "batch_size": (tf.int32, []),
}


def test_bundled_model_has_the_contract_signature(bundled_model):
    predictor = export.Predictor(bundled_model)
    sig = predictor.signature
    assert sig.method_name == "tensorflow/serving/predict"
    assert set(sig.inputs) == set(CONTRACT)
    for name, (dtype, shape) in CONTRACT.items():
        info = sig.inputs[name]
        assert tf.as_dtype(info.dtype) == dtype, name
        assert [d.size for d in info.tensor_shape.dim] == shape, name
    out = sig.outputs["pred_all"]
    assert tf.as_dtype(out.dtype) == tf.float32
    assert [d.size for d in out.tensor_shape.dim] == [-1, -1, 124]
    predictor.close()


def test_padding_does_not_change_a_students_predictions(bundled_model, test_split):
    """Masking by sequence_len: a student scored in a padded batch equals scored alone."""
    students = data.read_dkt3(test_split)[:8]
    predictor = export.Predictor(bundled_model)
    together = predictor.predict(data.pad_batch(students, 124))
    for b, s in enumerate(students):
        n = len(s.skills)
        alone = predictor.predict(data.pad_batch([s], 124))[0]
        np.testing.assert_allclose(together[b, :n], alone[:n], atol=1e-6)
    predictor.close()


def real_students(test_split, count=12):
    """The first students plus the two longest (thousands of steps)."""
    students = data.read_dkt3(test_split)
    longest = sorted(students, key=lambda s: len(s.skills))[-2:]
    return students[:count] + longest


def test_predict_ids_equals_predict(bundled_model, test_split):
    """The compact signature gathers kernel rows instead of multiplying a one-hot: same pred_all."""
    predictor = export.Predictor(bundled_model)
    students = real_students(test_split)
    padded = data.pad_batch(students, 124)
    want = predictor.predict(padded)
    steps = padded["max_steps"]
    skill_id = np.zeros((len(students), steps), np.int32)
    correct = np.zeros((len(students), steps), np.int32)
    for b, s in enumerate(students):
        skill_id[b, : len(s.skills)] = s.skills
        correct[b, : len(s.skills)] = s.correct
    got = predictor.run("predict_ids", skill_id=skill_id, correct=correct,
                        sequence_len=padded["sequence_len"])["pred_all"]
    assert got.shape == want.shape
    for b, s in enumerate(students):
        n = len(s.skills)
        np.testing.assert_allclose(got[b, :n], want[b, :n], atol=1e-5)
    predictor.close()


def test_step_reproduces_predict_at_every_step(bundled_model, test_split):
    """Carrying (c, h) through step, one interaction at a time, gives pred_all[:, t, :] at every t."""
    predictor = export.Predictor(bundled_model)
    students = real_students(test_split)
    padded = data.pad_batch(students, 124)
    want = predictor.predict(padded)
    sig = predictor.signatures["step"]
    state_keys = sorted(k for k in sig.inputs if k.startswith("state_"))
    assert state_keys == ["state_c_0", "state_h_0"]
    assert sorted(sig.outputs) == ["mastery", "state_c_0", "state_h_0"]
    hidden = sig.inputs["state_c_0"].tensor_shape.dim[1].size
    # Every student steps in the same run; finished students keep stepping on
    # padding, which is harmless because their rows are no longer compared.
    state = {k: np.zeros((len(students), hidden), np.float32) for k in state_keys}
    worst = 0.0
    for t in range(padded["max_steps"]):
        skill = np.array([s.skills[t] if t < len(s.skills) else 0 for s in students], np.int32)
        corr = np.array([s.correct[t] if t < len(s.skills) else 0 for s in students], np.int32)
        out = predictor.run("step", skill_id=skill, correct=corr, **state)
        state = {k: out[k] for k in state_keys}
        for b, s in enumerate(students):
            if t < len(s.skills):
                worst = max(worst, float(np.abs(out["mastery"][b] - want[b, t]).max()))
    assert worst <= 1e-5, worst
    predictor.close()


def test_upgrade_in_place_keeps_weights_and_side_files(bundled_model, test_split, tmp_path):
    """dkt.upgrade re-exports in place: the same predict output, every signature, assets.extra kept."""
    from dkt import upgrade
    import shutil
    model_dir = tmp_path / "dkt" / "1"
    shutil.copytree(bundled_model, model_dir)
    upgrade.main(["--model", str(model_dir), "--out", str(model_dir)])
    assert (model_dir / "assets.extra" / "training.json").exists()
    assert sorted(p.name for p in (tmp_path / "dkt").iterdir()) == ["1"], "no staging directory left behind"
    students = data.read_dkt3(test_split)[:4]
    padded = data.pad_batch(students, 124)
    before, after = export.Predictor(bundled_model), export.Predictor(str(model_dir))
    assert set(after.signatures) >= {"predict", "predict_ids", "step", "chunk"}
    np.testing.assert_array_equal(after.predict(padded), before.predict(padded))
    before.close()
    after.close()
