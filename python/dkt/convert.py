"""Converts an origin tf.train.Saver checkpoint into the predict SavedModel.

    python -m dkt.convert --checkpoint DIR --prefix test/dkt --out models/dkt/2

The origin's second save method writes .meta/.index/.data-* files whose tensors are
named like test/dkt/input_x. The graph is imported as it was trained (nothing is
rebuilt or guessed), the weights restored, and the same signature as dkt.train's
export is written. Only the variables the model needs are saved: optimizer slots
and counters stay behind.
"""
import argparse
import os
import sys

from . import export
from . import model as dkt_model
import tensorflow as tf

v1 = tf.compat.v1


class ConvertError(Exception):
    pass


def find_checkpoint(path):
    """Accepts a checkpoint directory, a checkpoint prefix, or a .meta file."""
    if path.endswith(".meta"):
        path = path[: -len(".meta")]
    if os.path.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest is None:
            metas = sorted(f for f in os.listdir(path) if f.endswith(".meta"))
            if not metas:
                raise ConvertError(f"{path}: no checkpoint found (no 'checkpoint' index file and no *.meta); "
                                   "pass the directory tf.train.Saver.save wrote into")
            latest = os.path.join(path, metas[-1][: -len(".meta")])
        path = latest
    if not os.path.exists(path + ".meta"):
        raise ConvertError(f"{path}.meta: missing; the converter needs the graph saved by tf.train.Saver "
                           "(write_meta_graph=True, the default)")
    return path


def convert(checkpoint, prefix, out_dir, output_tensor=None):
    ckpt = find_checkpoint(checkpoint)
    prefix = prefix.strip("/")
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as sess:
        saver = v1.train.import_meta_graph(ckpt + ".meta", clear_devices=True)
        saver.restore(sess, ckpt)

        def tensor(name):
            full = f"{prefix}/{name}:0" if prefix else f"{name}:0"
            try:
                return graph.get_tensor_by_name(full)
            except KeyError:
                raise ConvertError(f"{ckpt}: no tensor {full}; check --prefix (the scope the model was built in)") from None

        inputs = {name: tensor(name) for name in dkt_model.INPUTS}
        if output_tensor:
            try:
                pred_all = graph.get_tensor_by_name(output_tensor)
            except KeyError:
                raise ConvertError(f"{ckpt}: no tensor {output_tensor} (from --output-tensor)") from None
        else:
            try:
                pred_all = tensor(dkt_model.OUTPUT)
            except ConvertError as err:
                sigmoids = [op.name for op in graph.get_operations() if op.type == "Sigmoid"]
                raise ConvertError(f"{err}; name the sigmoid over the reshaped logits with --output-tensor, "
                                   f"one of: {', '.join(sigmoids) or '(no Sigmoid ops)'}") from None
        needed = v1.trainable_variables()
        export.export_saved_model(sess, {dkt_model.SIGNATURE: (inputs, {dkt_model.OUTPUT: pred_all})}, out_dir,
                                  saver=v1.train.Saver(var_list=needed))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="checkpoint directory, prefix, or .meta file")
    ap.add_argument("--prefix", default="test/dkt", help="scope of the model's tensors in the checkpoint graph")
    ap.add_argument("--out", required=True, help="SavedModel directory to write, e.g. models/dkt/2")
    ap.add_argument("--output-tensor", help="pred_all tensor name when it is not PREFIX/pred_all:0")
    args = ap.parse_args(argv)
    try:
        convert(args.checkpoint, args.prefix, args.out, args.output_tensor)
    except ConvertError as err:
        print(f"dkt.convert: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
