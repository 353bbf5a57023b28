"""Writing and reading the "predict" SavedModel (tag serve, TF Serving NAME/VERSION layout)."""
import os
import shutil

from . import model as dkt_model
import tensorflow as tf

v1 = tf.compat.v1


def export_saved_model(sess, inputs, outputs, out_dir, saver=None):
    """Exports the session's graph with the predict signature into out_dir (replaced)."""
    if os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    builder = v1.saved_model.Builder(out_dir)
    signature = v1.saved_model.signature_def_utils.predict_signature_def(inputs=inputs, outputs=outputs)
    # predict_signature_def names the method tensorflow/serving/predict, as TF Serving expects.
    builder.add_meta_graph_and_variables(
        sess, [v1.saved_model.tag_constants.SERVING],
        signature_def_map={dkt_model.SIGNATURE: signature}, strip_default_attrs=True,
        saver=saver)
    builder.save()


class Predictor:
    """Runs a SavedModel's predict signature on padded inputs (see data.pad_batch)."""

    def __init__(self, model_dir):
        self.graph = tf.Graph()
        self.sess = v1.Session(graph=self.graph)
        meta = v1.saved_model.loader.load(self.sess, [v1.saved_model.tag_constants.SERVING], model_dir)
        self.signature = meta.signature_def[dkt_model.SIGNATURE]

    def predict(self, padded):
        """Returns pred_all [B, T, S]."""
        inputs = self.signature.inputs
        feed = {inputs[name].name: padded[name]
                for name in ("input_x", "target_id", "max_steps", "sequence_len", "batch_size")}
        feed[inputs["keep_prob"].name] = 1.0
        return self.sess.run(self.signature.outputs[dkt_model.OUTPUT].name, feed)

    def close(self):
        self.sess.close()
