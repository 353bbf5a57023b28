"""Trains the DKT model on a DKT 3-line CSV and exports the predict SavedModel.

    python -m dkt.train --train ../data/assistments/builder_train.csv \
        --test ../data/assistments/builder_test.csv --out ../models/dkt/1

Deterministic: fixed seeds, op determinism, and a fixed batch order, so `make model`
reproduces the bundled model.
"""
import argparse
import contextlib
import json
import os
import platform
import random
import sys
import time

import numpy as np

from . import data
from . import export
from . import model as dkt_model
import tensorflow as tf

v1 = tf.compat.v1


def build(num_skills, hidden, learning_rate, scope, training=True, seed=42):
    """Builds TensorFlowDKT under a name scope such as "test/dkt" (the origin's checkpoints)."""
    def nested(parts):
        if not parts:
            return dkt_model.TensorFlowDKT(num_skills, hidden, learning_rate, training=training, seed=seed)
        with v1.variable_scope(parts[0]):
            return nested(parts[1:])
    return nested([p for p in scope.split("/") if p])


def evaluate(sess, model, students, num_skills, batch_size=64, max_padded_steps=64 * 1024):
    """Pooled next-step AUC: pred_all[t, skill_{t+1}] against correct_{t+1} over all real steps."""
    labels, scores = [], []
    for rows in data.length_batches(students, batch_size, max_padded_steps):
        padded = data.pad_batch([students[i] for i in rows], num_skills)
        pred = sess.run(model.pred, model.feed(padded, keep_prob=1.0))
        real = padded["mask"] == 1.0
        labels.append(padded["target_correct"][real])
        scores.append(pred[real])
    return data.auc(np.concatenate(labels), np.concatenate(scores))


@contextlib.contextmanager
def inference_session(weights, args):
    """A fresh inference-only graph (no optimizer) holding the given weights."""
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as sess:
        v1.set_random_seed(args.seed)  # op determinism insists, though every value is loaded
        model = build(args.num_skills, tuple(args.hidden), args.learning_rate, args.scope, training=False,
                      seed=args.seed)
        for var in v1.global_variables():
            var.load(weights[var.op.name], sess)
        yield sess, model


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", required=True, help="DKT 3-line CSV to train on")
    ap.add_argument("--test", required=True, help="DKT 3-line CSV to report pooled AUC on")
    ap.add_argument("--out", required=True, help="SavedModel directory to write, e.g. models/dkt/1")
    ap.add_argument("--num-skills", type=int, default=124)
    ap.add_argument("--hidden", type=int, nargs="+", default=[200], help="LSTM layer sizes")
    ap.add_argument("--epochs", type=int, default=10, help="most epochs to train")
    ap.add_argument("--patience", type=int, default=2,
                    help="stop after this many epochs without a better validation AUC; the best epoch's weights are kept")
    ap.add_argument("--validation", type=float, default=0.1,
                    help="fraction of training students held out for early stopping (never the test file)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-padded-steps", type=int, default=32 * 1024,
                    help="cap on batch_size*max_steps per training batch (long students train in smaller batches)")
    ap.add_argument("--learning-rate", type=float, default=0.01)
    ap.add_argument("--keep-prob", type=float, default=0.6, help="dropout keep probability while training")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--scope", default="dkt", help="name scope of the graph, e.g. test/dkt as in the origin")
    ap.add_argument("--checkpoint", help="also write a tf.train.Saver checkpoint (origin's other save method) here")
    ap.add_argument("--limit", type=int, default=0, help="train on the first N students only (tests)")
    args = ap.parse_args(argv)

    random.seed(args.seed)
    np.random.seed(args.seed)
    tf.config.experimental.enable_op_determinism()
    train = data.read_dkt3(args.train)
    test = data.read_dkt3(args.test)
    if args.limit:
        train, test = train[: args.limit], test[: args.limit]
    held_out = set(np.random.RandomState(args.seed).permutation(len(train))[: int(len(train) * args.validation)])
    validation = [s for i, s in enumerate(train) if i in held_out] or train
    train = [s for i, s in enumerate(train) if i not in held_out]

    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(args.seed)
        model = build(args.num_skills, tuple(args.hidden), args.learning_rate, args.scope, seed=args.seed)
        saver = v1.train.Saver()
        rng = np.random.RandomState(args.seed)
        batches = list(data.length_batches(train, args.batch_size, args.max_padded_steps))
        started = time.time()
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            history, best, best_weights = [], None, None
            for epoch in range(args.epochs):
                losses = []
                for k in rng.permutation(len(batches)):
                    padded = data.pad_batch([train[i] for i in batches[k]], args.num_skills)
                    loss, _ = sess.run([model.loss, model.train_op],
                                       model.feed(padded, args.keep_prob, with_targets=True))
                    losses.append(loss)
                val_auc = evaluate(sess, model, validation, args.num_skills)
                history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "validation_auc": float(val_auc)})
                print(f"epoch {epoch + 1}: loss={np.mean(losses):.4f} validation_auc={val_auc:.4f} "
                      f"elapsed={time.time() - started:.0f}s", flush=True)
                if best is None or val_auc > history[best]["validation_auc"]:
                    best = epoch
                    best_weights = {v.op.name: sess.run(v) for v in v1.trainable_variables()}
                    if args.checkpoint:
                        os.makedirs(args.checkpoint, exist_ok=True)
                        saver.save(sess, os.path.join(args.checkpoint, "model"))
                elif epoch - best >= args.patience:
                    break
            train_seconds = time.time() - started
    with inference_session(best_weights, args) as (sess, model):
        test_auc = evaluate(sess, model, test, args.num_skills)
        export.export_saved_model(sess, model.signatures(), args.out)
    print(f"best epoch {best + 1}: pooled test AUC {test_auc:.4f}", flush=True)

    report = {
        "test_auc_pooled": float(test_auc), "best_epoch": best + 1, "epochs": history, "train_seconds": round(train_seconds, 1),
        "train_file": os.path.basename(args.train), "test_file": os.path.basename(args.test),
        "students_train": len(train), "students_validation": len(validation), "students_test": len(test),
        "hidden": args.hidden, "batch_size": args.batch_size, "learning_rate": args.learning_rate,
        "keep_prob": args.keep_prob, "seed": args.seed, "tensorflow": tf.__version__,
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
    }
    # assets.extra is ignored by loaders (TF Serving convention for side files).
    os.makedirs(os.path.join(args.out, "assets.extra"), exist_ok=True)
    with open(os.path.join(args.out, "assets.extra", "training.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(f"exported {args.out}: pooled test AUC {report['test_auc_pooled']:.4f} "
          f"in {train_seconds:.0f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
