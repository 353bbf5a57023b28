"""End-to-end throughput of `dktscore serve --mode events` through the local Kafka broker: the
ASSISTments test split replayed as events (one message per interaction, keyed by student_id, the
students interleaved round-robin, each student's interactions in file order).

    scripts/kafka-local start
    .venv/bin/python bench/serve_events.py --runs 3 [--delivery exactly-once] [--limit N]

Timed from the first produced event to the last result consumed (the events are produced while the
worker is already running, model loaded and partitions restored); results, changelog writes and
offset commits included. Medians of --runs runs, each on fresh topics. `make bench` row g times the
engine alone (carried state vs re-scoring); this script adds Kafka.
"""
import argparse
import json
import os
import pathlib
import statistics
import sys
import uuid

import kafka_bench
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))
from dkt import data  # noqa: E402

DKTSCORE = str(ROOT / "bin" / "dktscore")


def events(limit):
    students = data.read_dkt3(ROOT / "data/assistments/builder_test.csv")
    out = []
    for t in range(max(len(s.skills) for s in students)):
        for i, s in enumerate(students):
            if t < len(s.skills):
                out.append((f"s{i}".encode(), json.dumps({"student_id": f"s{i}", "skill_id": int(s.skills[t]),
                                                          "correct": int(s.correct[t])}).encode()))
    return out[:limit] if limit else out


def time_run(stream, brokers, partitions, delivery):
    run = uuid.uuid4().hex[:8]
    inp, out, dlq, state = (f"bench-ev-{x}-{run}" for x in ("in", "out", "dlq", "state"))
    kafka_bench.create_topics(brokers, partitions, inp, out, dlq)
    env = dict(os.environ, DKTSCORE_KAFKA_BROKERS=brokers, DKTSCORE_KAFKA_INPUT_TOPIC=inp, DKTSCORE_KAFKA_OUTPUT_TOPIC=out,
               DKTSCORE_KAFKA_DEAD_LETTER_TOPIC=dlq, DKTSCORE_KAFKA_CHANGELOG_TOPIC=state,
               DKTSCORE_CREATE_TOPICS_PARTITIONS=str(partitions), DKTSCORE_KAFKA_GROUP=f"bench-{run}",
               DKTSCORE_MODE="events", DKTSCORE_DELIVERY=delivery,
               DKTSCORE_MODEL=str(ROOT / "models/dkt"), DKTSCORE_MODEL_VERSION="1", TF_CPP_MIN_LOG_LEVEL="2")
    return kafka_bench.time_through_serve(DKTSCORE, env, brokers, inp, out, stream, read_committed=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--partitions", type=int, default=3)
    p.add_argument("--delivery", default="at-least-once", choices=["at-least-once", "exactly-once"])
    p.add_argument("--limit", type=int, default=0, help="replay only the first N events")
    args = p.parse_args()
    brokers = os.environ.get("DKTSCORE_KAFKA_BROKERS", "127.0.0.1:9092")
    stream = events(args.limit)
    times = [time_run(stream, brokers, args.partitions, args.delivery) for _ in range(args.runs)]
    median = statistics.median(times)
    print(json.dumps({"events": len(stream), "delivery": args.delivery, "partitions": args.partitions,
                      "runs_s": [round(t, 2) for t in times], "median_s": round(median, 2),
                      "events_per_s": round(len(stream) / median)}))


if __name__ == "__main__":
    main()
