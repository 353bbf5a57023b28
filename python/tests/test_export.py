"""The bundled SavedModel presents the origin's predict signature exactly (GUIDE §1)."""
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
