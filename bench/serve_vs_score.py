"""Throughput of `dktscore serve` through the local Kafka broker versus `dktscore score`
on the same records (the ASSISTments test split, repeated).

    scripts/kafka-local start
    .venv/bin/python bench/serve_vs_score.py --repeat 3

serve is timed from the first produced record to the last result consumed (the records are
produced while serve is already running); score from process start to exit, file to Parquet.
Both include model loading. Medians of --runs runs.
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import kafka_bench
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))
from dkt import data  # noqa: E402

DKTSCORE = str(ROOT / "bin" / "dktscore")


def records(repeat):
    students = data.read_dkt3(ROOT / "data/assistments/builder_test.csv")
    out = []
    for r in range(repeat):
        for i, s in enumerate(students):
            out.append(json.dumps({"student_id": f"r{r}s{i}", "skills": s.skills.tolist(),
                                   "correct": s.correct.tolist()}).encode())
    return out, sum(len(s.skills) for s in students) * repeat


def time_score(values, tmp):
    path = pathlib.Path(tmp) / "in.jsonl"
    path.write_bytes(b"\n".join(values) + b"\n")
    start = time.perf_counter()
    subprocess.run([DKTSCORE, "score", "--model", str(ROOT / "models/dkt"), "--input", str(path),
                    "--output", str(pathlib.Path(tmp) / "out.parquet"), "--quiet"], check=True, capture_output=True)
    return time.perf_counter() - start


def time_serve(values, brokers, partitions):
    run = uuid.uuid4().hex[:8]
    inp, out, dlq = f"bench-in-{run}", f"bench-out-{run}", f"bench-dlq-{run}"
    kafka_bench.create_topics(brokers, partitions, inp, out, dlq)
    env = dict(os.environ, DKTSCORE_KAFKA_BROKERS=brokers, DKTSCORE_KAFKA_INPUT_TOPIC=inp, DKTSCORE_KAFKA_OUTPUT_TOPIC=out,
               DKTSCORE_KAFKA_DEAD_LETTER_TOPIC=dlq, DKTSCORE_KAFKA_GROUP=f"bench-{run}",
               DKTSCORE_MODEL=str(ROOT / "models/dkt"), TF_CPP_MIN_LOG_LEVEL="2")
    return kafka_bench.time_through_serve(DKTSCORE, env, brokers, inp, out,
                                          [(str(i).encode(), v) for i, v in enumerate(values)])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3, help="copies of the test split (856 students each)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--brokers", default=os.environ.get("DKTSCORE_KAFKA_BROKERS", "127.0.0.1:9092"))
    args = ap.parse_args()
    values, interactions = records(args.repeat)
    with tempfile.TemporaryDirectory() as tmp:
        score = statistics.median(time_score(values, tmp) for _ in range(args.runs))
    serve = statistics.median(time_serve(values, args.brokers, args.partitions) for _ in range(args.runs))
    print(f"{len(values)} sequences, {interactions} interactions, median of {args.runs} runs, {os.cpu_count()} cores")
    for name, secs in (("score (file -> Parquet)", score), ("serve (Kafka -> Kafka)", serve)):
        print(f"  {name:26s} {secs:6.2f}s  {len(values) / secs:7.1f} sequences/s  {interactions / secs:8.0f} interactions/s")
    print(f"serve / score throughput: {score / serve:.2f}")


if __name__ == "__main__":
    main()
