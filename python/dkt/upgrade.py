"""Re-exports a SavedModel written by dkt.train with every current signature.

    python -m dkt.upgrade --model models/dkt/1 --out models/dkt/2   # or in place: --model only

The weights are read from the SavedModel's variables and loaded, unchanged, into
a freshly built inference graph that carries predict, predict_ids, step and chunk. The
architecture (num_skills, hidden sizes) comes from the variables' shapes, so no
training run is needed to add a signature to a model that is already trained.
"""
import argparse
import os
import re
import shutil
import sys
import tempfile

from . import export
from . import train
import tensorflow as tf

v1 = tf.compat.v1


def read_weights(model_dir):
    reader = tf.train.load_checkpoint(os.path.join(model_dir, "variables", "variables"))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def architecture(weights):
    """scope, num_skills and hidden sizes from variable names and shapes (see model.TensorFlowDKT)."""
    layers = {}
    scope = None
    for name, value in weights.items():
        m = re.fullmatch(r"(.*?)/?layer_(\d+)/rnn/lstm_cell/kernel", name)
        if m:
            scope = m.group(1)
            layers[int(m.group(2))] = value.shape[1] // 4
    if not layers or scope is None:
        raise SystemExit("no layer_N/rnn/lstm_cell/kernel variables: not a model written by dkt.train. A checkpoint "
                         "converted with dkt.convert keeps the origin's graph: dktscore serves it through predict, "
                         "but it cannot get predict_ids, step or chunk")
    num_skills = weights[f"{scope}/b" if scope else "b"].shape[0]
    return scope, num_skills, [layers[i] for i in sorted(layers)]


def upgrade(model_dir, out_dir):
    weights = read_weights(model_dir)
    scope, num_skills, hidden = architecture(weights)
    args = argparse.Namespace(seed=42, num_skills=num_skills, hidden=hidden, learning_rate=0.0, scope=scope)
    with train.inference_session(weights, args) as (sess, model):
        signatures = model.signatures()
        export.export_saved_model(sess, signatures, out_dir)
    extra = os.path.join(model_dir, "assets.extra")
    if os.path.isdir(extra) and os.path.abspath(extra) != os.path.abspath(os.path.join(out_dir, "assets.extra")):
        shutil.copytree(extra, os.path.join(out_dir, "assets.extra"))
    return sorted(signatures)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="SavedModel version directory written by dkt.train")
    ap.add_argument("--out", help="where to write (default: replace --model in place). For a model a worker is "
                                  "serving, write the next version number instead: the worker swaps to it")
    args = ap.parse_args(argv)
    in_place = not args.out or os.path.abspath(args.out) == os.path.abspath(args.model)
    if not in_place:
        signatures = upgrade(args.model, args.out)
    else:
        # Write beside it, then move the original aside and the new one in:
        # a failure at any point leaves one complete model at --model or
        # beside it, never none.
        tmp = tempfile.mkdtemp(prefix=".upgrade-", dir=os.path.dirname(os.path.abspath(args.model)))
        staged = os.path.join(tmp, "model")
        signatures = upgrade(args.model, staged)
        os.rename(args.model, os.path.join(tmp, "original"))
        os.rename(staged, args.model)
        shutil.rmtree(tmp)
    print(f"re-exported {args.model if in_place else args.out} with signatures {', '.join(signatures)}", file=sys.stderr)


if __name__ == "__main__":
    main()
