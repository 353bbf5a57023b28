"""Interleaved A/B of two dktscore binaries on the ASSISTments test split: `score` end to end
(process start to exit) and the engine ceiling (`bench --rows a`), each binary with its own
default policy, alternating which runs first each round; medians over rounds.

    git worktree add /tmp/before <commit> && (cd /tmp/before && make build)   # or any old binary
    .venv/bin/python bench/ab.py --before /tmp/before/bin/dktscore --after bin/dktscore
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

ROOT = pathlib.Path(__file__).resolve().parents[1]
INPUT = ROOT / "data/assistments/builder_test.csv"
MODEL = ROOT / "models/dkt"
INTERACTIONS = 117_567


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True)
    ap.add_argument("--after", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    bins = {"before": args.before, "after": args.after}
    res = {k: {"score": [], "score_cpu": [], "score_rss": [], "engine": [], "engine_rss": []} for k in bins}
    for rnd in range(args.rounds):
        order = list(bins.items()) if rnd % 2 == 0 else list(bins.items())[::-1]
        for name, binary in order:
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                proc = subprocess.Popen([binary, "score", "--model", MODEL, "--input", INPUT, "--output",
                                         pathlib.Path(tmp) / "out.parquet", "--quiet"],
                                        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                _, status, usage = os.wait4(proc.pid, 0)
                secs = time.perf_counter() - start
            if os.waitstatus_to_exitcode(status) != 0:
                raise SystemExit(f"{binary} score failed")
            r = res[name]
            r["score"].append(INTERACTIONS / secs)
            r["score_cpu"].append(INTERACTIONS / (usage.ru_utime + usage.ru_stime))
            r["score_rss"].append(usage.ru_maxrss / 1024)
            out = subprocess.run([binary, "bench", "--model", MODEL, "--input", INPUT, "--rows", "a", "--runs", "1",
                                  "--warmup", "1", "--json"], env=env, capture_output=True, text=True, check=True).stdout
            row = json.loads(out.strip().splitlines()[-1])
            r["engine"].append(row["interactions_per_s"])
            r["engine_rss"].append(row["peak_rss_kib"] / 1024)
        print(f"round {rnd + 1}/{args.rounds}", file=sys.stderr, flush=True)
    print(f"medians of {args.rounds} interleaved rounds; load average at end {os.getloadavg()[0]:.2f}\n")
    print("| binary | score interactions/s | score per CPU-second | score peak RSS | engine (row a) interactions/s | engine VmHWM |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in res.items():
        med = {k: statistics.median(v) for k, v in r.items()}
        print(f"| {name} (`{bins[name]}`) | {med['score']:,.0f} | {med['score_cpu']:,.0f} | {med['score_rss']:.0f} MiB "
              f"| {med['engine']:,.0f} | {med['engine_rss']:.0f} MiB |")


if __name__ == "__main__":
    main()
