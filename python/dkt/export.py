"""Writing and reading the "predict" SavedModel (tag serve, TF Serving NAME/VERSION layout)."""
import os
import shutil

from . import model as dkt_model
import tensorflow as tf

v1 = tf.compat.v1


def export_saved_model(sess, signatures, out_dir, saver=None):
    """Exports the session's graph into out_dir (replaced) with signatures: name -> (inputs, outputs)."""
    if os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    builder = v1.saved_model.Builder(out_dir)
    # predict_signature_def names the method tensorflow/serving/predict, as TF Serving expects.
    signature_map = {name: v1.saved_model.signature_def_utils.predict_signature_def(inputs=inputs, outputs=outputs)
                     for name, (inputs, outputs) in signatures.items()}
    builder.add_meta_graph_and_variables(
        sess, [v1.saved_model.tag_constants.SERVING],
        signature_def_map=signature_map, strip_default_attrs=True, saver=saver)
    builder.save()


class Predictor:
    """Runs a SavedModel's signatures: predict on padded inputs (see data.pad_batch), predict_ids, step."""

    def __init__(self, model_dir):
        self.graph = tf.Graph()
        self.sess = v1.Session(graph=self.graph)
        meta = v1.saved_model.loader.load(self.sess, [v1.saved_model.tag_constants.SERVING], model_dir)
        self.signatures = meta.signature_def
        self.signature = meta.signature_def[dkt_model.SIGNATURE]

    def predict(self, padded):
        """Returns pred_all [B, T, S]."""
        inputs = self.signature.inputs
        feed = {inputs[name].name: padded[name]
                for name in ("input_x", "target_id", "max_steps", "sequence_len", "batch_size")}
        feed[inputs["keep_prob"].name] = 1.0
        return self.sess.run(self.signature.outputs[dkt_model.OUTPUT].name, feed)

    def run(self, signature, **inputs):
        """Runs any signature by key; returns its outputs by key."""
        sig = self.signatures[signature]
        feed = {sig.inputs[key].name: value for key, value in inputs.items()}
        names = {key: info.name for key, info in sig.outputs.items()}
        return self.sess.run(names, feed)

    def close(self):
        self.sess.close()
