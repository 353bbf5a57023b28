"""Reference predictions from Python TensorFlow, for the Go side's parity tests.

    python -m dkt.reference --model ../models/dkt/1 --input FILE.csv --students 0,1,5 --out ref.json

Each student is run alone, unpadded (batch of one), so the reference carries no
batching or padding logic that the Go side could share a bug with.
"""
import argparse
import json

import numpy as np

from . import data
from . import export


def pick(students, spec):
    """Resolves "0,7,first:10,longest:2" into distinct ordinals, in order of first mention."""
    by_length = sorted(range(len(students)), key=lambda i: (len(students[i].skills), i))
    chosen = []
    for item in spec.split(","):
        kind, _, count = item.partition(":")
        if kind == "first":
            picked = range(int(count))
        elif kind == "shortest":
            picked = by_length[: int(count)]
        elif kind == "longest":
            picked = by_length[-int(count):]
        else:
            picked = [int(item)]
        chosen.extend(i for i in picked if i not in chosen)
    return chosen


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="SavedModel version directory")
    ap.add_argument("--input", required=True, help="DKT 3-line CSV")
    ap.add_argument("--students", required=True,
                    help="comma-separated 0-based student ordinals, or picks: first:N, shortest:N, longest:N")
    ap.add_argument("--num-skills", type=int, default=124)
    ap.add_argument("--max-steps", type=int, default=0, help="feed only the last N interactions (0 = all)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    students = data.read_dkt3(args.input)
    predictor = export.Predictor(args.model)
    result = []
    for index in pick(students, args.students):
        s = students[index]
        start = max(0, len(s.skills) - args.max_steps) if args.max_steps else 0
        window = data.Student(s.skills[start:], s.correct[start:])
        padded = data.pad_batch([window], args.num_skills)
        pred_all = predictor.predict(padded)[0]
        n = len(window.skills)
        result.append({
            "index": index, "seq_len": n, "window_start": start,
            "skills": s.skills.tolist(), "correct": s.correct.tolist(),
            "mastery": pred_all[n - 1].tolist(),
            # pred_all[t, skill_{t+1}]: the next-step prediction behind the pooled AUC.
            "next_pred": pred_all[np.arange(n - 1), window.skills[1:]].tolist(),
        })
    with open(args.out, "w") as f:
        json.dump({"num_skills": args.num_skills, "students": result}, f)


if __name__ == "__main__":
    main()
