"""The side-by-side benchmark (`make bench`): every row in ONE run on this machine,
on the ASSISTments test split with the bundled model, medians of --runs runs each.

    scripts/kafka-local start            # row c needs the local broker
    .venv/bin/python bench/run.py        # writes BENCHMARKS.md, prints the ratios last

  a  engine ceiling: `dktscore bench --rows a`, model.Predict alone over pre-built
     length-bucketed batches (Assembler, score's policy), no I/O or decoding, on the signature
     score uses (predict_ids when the model has it)
  o  row a on the origin `predict` signature (`dktscore bench --rows o`: the model builds the
     one-hot input_x from the ids); a÷o is what the compact signature buys
  b  `dktscore score` end-to-end, file -> Parquet, process start to exit (model load included)
  c  `dktscore serve` end-to-end through Kafka: first produce -> last result consumed (after one
     warm-up record), plus per-record latency at a fixed offered load (--load x row c's throughput)
  d  origin-style: Python TF on the same SavedModel, one sequence per session run, on the origin
     `predict` signature (what the origin's client sent)
  e  Python TF, length-sorted batches of --batch-size (same padded-steps budget as score), on
     `predict_ids` when the model has it (as dktscore runs it)
  f  `dktscore bench --rows f`: naive batching, --batch-size in file order padded to the longest
  g  `dktscore bench --rows g`: the split replayed as events, carried LSTM state (one step
     per event) vs re-scoring the history per event (sampled); own section, see bench/events_row.py
  m  the TF Serving front door: `dktscore bench --rows m`, closed-loop gRPC clients (1, 8, 64, 256)
     sending one student per Predict request, against `dktscore model-server` with batching on
     and off; own section, see bench/frontdoor_row.py. `--rows m` alone measures only this and
     replaces its section of BENCHMARKS.md, leaving the rest

Throughput of a, d, e, f counts the timed loop only (model loaded, input decoded; d and e include
building the padded tensors, as the origin's client built a request per sequence). Peak RSS is
the process's: VmHWM for a/o/f (one `dktscore bench` process per row), ru_maxrss from wait4 for
b, c, d, e (each its own child process). a, b, c run the product's default batch policy and
threads (BENCHMARKS.md, "Tuning"); --batch-size is e's and f's batch size and is passed to a, b, c.
"""
import argparse
import datetime
import json
import os
import pathlib
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.request
import uuid

import events_row  # row g, bench/events_row.py
import frontdoor_row  # row m, bench/frontdoor_row.py

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))
INPUT = ROOT / "data/assistments/builder_test.csv"
MODEL = ROOT / "models/dkt"
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
TUNING_HEADING = "## Tuning"
GOALS = "b÷a ≥ 0.90, c÷a ≥ 0.80, b÷d ≥ 20, b÷e ≥ 1.0, padding efficiency ≥ 0.95, peak RSS ≤ 1 GiB, b ≥ 150k interactions/s on 2 cores"


def run_child(cmd, env=None, stdin=None):
    """Runs cmd to completion; returns (seconds, stdout, stderr, peak RSS KiB of that child)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env or ENV, stdout=out, stderr=err, stdin=stdin or subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        secs = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(map(str, cmd))} exited {proc.returncode}:\n{stderr[-3000:]}")
    return secs, stdout, stderr, usage.ru_maxrss


def row(key, name, runs, sequences, interactions, padding, rss_kib, note=""):
    med = statistics.median(runs)
    return dict(row=key, name=name, runs_s=runs, median_s=med, sequences=sequences, interactions=interactions,
                sequences_per_s=sequences / med, interactions_per_s=interactions / med,
                padding_efficiency=padding, peak_rss_kib=rss_kib, note=note)


# ---------------------------------------------------------------- a, f: dktscore bench (Go)
def go_rows(args, keys):
    out = []
    for key in keys:  # one process per row, so VmHWM is that row's
        _, stdout, _, _ = run_child([args.dktscore, "bench", "--model", MODEL, "--input", INPUT, "--rows", key,
                                     "--runs", str(args.runs), "--batch-size", str(args.batch_size), "--json"])
        r = json.loads(stdout.strip().splitlines()[-1])
        name = {"a": "engine ceiling: Predict over pre-built length buckets (Go)",
                "k": "engine, chunk path: score's batches in blocks of carried state (Go)",
                "p": "engine peak: full random [batch, chunk] blocks, chunk path (Go)",
                "o": "row a on the origin one-hot `predict` signature (Go)",
                "f": f"naive batching: {args.batch_size} in file order, pad to longest (Go)"}[key]
        out.append(row(key, name, r["runs_s"], r["sequences"], r["interactions"], r["padding_efficiency"],
                       r["peak_rss_kib"], f"signature {r['signature']}, {r['batches']} batches, "
                                          f"{r['sessions']} sessions × {r['threads']} threads"))
    return out


# ---------------------------------------------------------------- b, x, r: dktscore score
def copies_of_input(n):
    """INPUT repeated n times under out/ (DKT 3-line: each copy's students get their own ordinals as ids)."""
    path = ROOT / "out" / f"{INPUT.stem}_x{n}.csv"
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        text = INPUT.read_text()
        path.write_text(text * n)
    return path


def score_row(args, sequences, interactions, key="b", copies=1, runs_wanted=None):
    runs, rss, padding = [], [], None
    inp = INPUT if copies == 1 else copies_of_input(copies)
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(runs_wanted or args.runs):
            secs, stdout, _, maxrss = run_child([args.dktscore, "score", "--model", MODEL, "--input", inp,
                                                 "--output", pathlib.Path(tmp) / "out.parquet", "--quiet",
                                                 "--batch-size", str(args.batch_size)])
            runs.append(secs)
            rss.append(maxrss)
            for field in stdout.split():
                if field.startswith("padding_efficiency="):
                    padding = float(field.split("=", 1)[1])
    name = "dktscore score: file → Parquet, process start to exit"
    if copies > 1:
        name += f", the split ×{copies}"
    return row(key, name, runs, sequences * copies, interactions * copies,
               padding, max(rss), "includes model load and decoding")


# ---------------------------------------------------------------- c: dktscore serve
class Serve:
    """One `dktscore serve` process on fresh topics, a result reader thread, and a producer."""

    def __init__(self, args):
        # Imported here: the Python rows' child processes (d, e) measure their
        # RSS and load none of the Kafka client.
        from confluent_kafka import Consumer, Producer
        import kafka_bench
        run = uuid.uuid4().hex[:8]
        self.inp, out, dlq = f"bench-in-{run}", f"bench-out-{run}", f"bench-dlq-{run}"
        kafka_bench.create_topics(args.brokers, args.partitions, self.inp, out, dlq)
        self.http = f"127.0.0.1:{kafka_bench.free_port()}"
        env = dict(ENV, DKTSCORE_KAFKA_BROKERS=args.brokers, DKTSCORE_KAFKA_INPUT_TOPIC=self.inp,
                   DKTSCORE_KAFKA_OUTPUT_TOPIC=out, DKTSCORE_KAFKA_DEAD_LETTER_TOPIC=dlq,
                   DKTSCORE_KAFKA_GROUP=f"bench-{run}", DKTSCORE_HTTP_ADDR=self.http, DKTSCORE_MODEL=str(MODEL),
                   DKTSCORE_BATCH_SIZE=str(args.batch_size))
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([args.dktscore, "serve"], env=env, stdout=self.log, stderr=self.log)
        self.consumer = Consumer({"bootstrap.servers": args.brokers, "group.id": f"reader-{run}",
                                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
        self.consumer.subscribe([out])
        self.producer = Producer({"bootstrap.servers": args.brokers, "linger.ms": 5, "acks": "all"})
        self.arrivals = {}  # (partition, offset) -> perf_counter when its result was consumed
        self.sent = {}  # (partition, offset) -> perf_counter when it was produced
        self.lock = threading.Condition()
        self.stop = False
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        import pyarrow as pa
        while not self.stop:
            msg = self.consumer.poll(0.1)
            if msg is None or msg.error() is not None:
                continue
            now = time.perf_counter()
            t = pa.ipc.open_stream(msg.value()).read_all()
            parts, offs = t.column("source_partition").to_pylist(), t.column("source_offset").to_pylist()
            with self.lock:
                for p, o in zip(parts, offs):
                    self.arrivals.setdefault((p, o), now)
                self.lock.notify_all()

    def produce(self, key, value):
        t = time.perf_counter()

        def delivered(err, msg):
            if err is None:
                with self.lock:
                    self.sent[(msg.partition(), msg.offset())] = t
        self.producer.produce(self.inp, key=key, value=value, on_delivery=delivered)
        self.producer.poll(0)

    def wait_for(self, count, timeout):
        """Waits until count input records have a result; returns the time the last one arrived."""
        deadline = time.perf_counter() + timeout
        self.producer.flush(timeout)
        with self.lock:
            while len(self.arrivals) < count:
                if not self.lock.wait(max(0.0, deadline - time.perf_counter())) and time.perf_counter() > deadline:
                    self.log.seek(0)
                    raise RuntimeError(f"serve: {len(self.arrivals)} of {count} results after {timeout}s; serve log:\n"
                                       + self.log.read().decode()[-3000:])
            return max(self.arrivals.values())

    def wait_ready(self, timeout=120):
        import kafka_bench
        if kafka_bench.wait_ready(self.http, self.proc, timeout):
            return
        self.log.seek(0)
        raise RuntimeError("serve did not become ready:\n" + self.log.read().decode()[-3000:])

    def padding(self):
        with urllib.request.urlopen(f"http://{self.http}/metrics", timeout=5) as r:
            text = r.read().decode()
        vals = {}
        for line in text.splitlines():
            if line.startswith(("dktscore_real_steps_total", "dktscore_computed_steps_total")):
                name, v = line.rsplit(" ", 1)
                vals[name.split("{")[0]] = float(v)
        if vals.get("dktscore_computed_steps_total"):
            return vals["dktscore_real_steps_total"] / vals["dktscore_computed_steps_total"]
        return None

    def close(self):
        """Stops serve (SIGTERM) and returns its peak RSS in KiB."""
        self.stop = True
        self.reader.join(5)
        self.consumer.close()
        self.proc.terminate()
        _, _, usage = os.wait4(self.proc.pid, 0)
        self.log.close()
        return usage.ru_maxrss


def serve_session(args, values, load_rate=None):
    """One serve process: a warm-up record (TF warm, both groups joined), then either every record
    as fast as possible (returns seconds) or every record paced at load_rate records/s (returns
    latencies). Also returns padding efficiency and peak RSS."""
    s = Serve(args)
    try:
        s.wait_ready()
        s.produce(b"warmup", values[0][1])
        s.wait_for(1, 120)
        with s.lock:
            warm = set(s.sent)
        n0 = len(s.arrivals)
        latencies, secs = [], None
        start = time.perf_counter()
        for i, (key, value) in enumerate(values):
            if load_rate:
                delay = start + i / load_rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            s.produce(key, value)
        last = s.wait_for(n0 + len(values), 300)
        secs = last - start
        with s.lock:
            for k, t in s.sent.items():
                if k in s.arrivals and k not in warm:
                    latencies.append(s.arrivals[k] - t)
        latencies.sort()
        padding = s.padding()
    finally:
        rss = s.close()
    return secs, latencies, padding, rss


def serve_row(args, values, sequences, interactions):
    runs, rss, pads = [], [], []
    for _ in range(args.runs):
        secs, _, padding, maxrss = serve_session(args, values)
        runs.append(secs)
        rss.append(maxrss)
        pads.append(padding)
    throughput = sequences / statistics.median(runs)
    rate = args.load * throughput
    lat = []
    p50s, p99s = [], []
    for _ in range(args.runs):
        _, latencies, _, maxrss = serve_session(args, values, load_rate=rate)
        rss.append(maxrss)
        p50s.append(pct(latencies, 50))
        p99s.append(pct(latencies, 99))
        lat.extend(latencies)
    r = row("c", "dktscore serve: Kafka → Kafka, first produce to last result", runs, sequences, interactions,
            statistics.median(p for p in pads if p is not None) if any(p is not None for p in pads) else None,
            max(rss), f"{args.partitions} partitions, serve's default batching policy except batch size")
    r.update(offered_load=rate, latency_p50_ms=statistics.median(p50s) * 1e3, latency_p99_ms=statistics.median(p99s) * 1e3,
             latency_samples=len(lat))
    return r


def pct(sorted_values, p):
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


# ---------------------------------------------------------------- d, e: Python TF (child process)
def python_child(args):
    """Runs inside a child process: prints one JSON row for --python-row d or e."""
    import numpy as np
    from dkt import data, export
    students = data.read_dkt3(args.input or INPUT)
    versions = sorted((p for p in MODEL.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    predictor = export.Predictor(str(versions[-1]))
    num_skills = int(predictor.signature.inputs["input_x"].tensor_shape.dim[2].size) // 2
    if args.python_row == "d":
        groups = [[s] for s in students]
    else:
        groups = [[students[i] for i in b] for b in data.length_batches(students, args.batch_size, args.max_padded_steps)]
    real = sum(len(s.skills) for g in groups for s in g)
    computed = sum(len(g) * max(len(s.skills) for s in g) for g in groups)

    # d is what the origin's client did: the one-hot predict signature. e is
    # the best Python can do with the same SavedModel: predict_ids when the
    # model has it, as dktscore runs it, so b÷e compares like with like.
    signature = "predict_ids" if args.python_row == "e" and "predict_ids" in predictor.signatures else "predict"

    def run_batch(g):
        if signature == "predict":
            return predictor.predict(data.pad_batch(g, num_skills))
        steps = max(len(s.skills) for s in g)
        skill_id = np.zeros((len(g), steps), np.int32)
        correct = np.zeros((len(g), steps), np.int32)
        for b, s in enumerate(g):
            skill_id[b, :len(s.skills)] = s.skills
            correct[b, :len(s.skills)] = s.correct
        lengths = np.array([len(s.skills) for s in g], np.int32)
        return predictor.run("predict_ids", skill_id=skill_id, correct=correct, sequence_len=lengths)

    def one_pass():
        start = time.perf_counter()
        for g in groups:
            run_batch(g)
        return time.perf_counter() - start
    for g in groups[:32]:  # warm-up
        run_batch(g)
    runs = [one_pass() for _ in range(args.runs)]
    print(json.dumps(dict(runs_s=runs, sequences=len(students), interactions=real, padding=real / computed,
                          batches=len(groups), signature=signature)))


def python_rows(args):
    out = []
    for key, name in (("d", "origin-style: Python TF, one sequence per session run"),
                      ("e", f"Python TF, length-sorted batches of {args.batch_size}"),
                      ("y", f"Python TF, length-sorted batches of {args.batch_size}, the split ×10 (row e's peer of row x)")):
        if key not in args.rows:
            continue
        child = "e" if key == "y" else key
        extra = ["--input", str(copies_of_input(10))] if key == "y" else []
        _, stdout, _, maxrss = run_child([sys.executable, __file__, "--python-row", child, "--runs", str(args.runs),
                                          "--batch-size", str(args.batch_size)] + extra)
        r = json.loads(stdout.strip().splitlines()[-1])
        out.append(row(key, name, r["runs_s"], r["sequences"], r["interactions"], r["padding"], maxrss,
                       f"signature {r['signature']}, {r['batches']} session runs, TF default threads"))
    return out


# ---------------------------------------------------------------- report
def machine():
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    flags = open("/proc/cpuinfo").read()
    avx512 = "avx512f" in flags
    mem = next((l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal")), "0")
    load = os.getloadavg()[0]
    return (f"{os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable), {model}, "
            f"{'AVX-512' if avx512 else 'no AVX-512'}, {int(mem) // 1024} MiB RAM, {platform.system()} {platform.release()}; "
            f"load average {load:.2f} at start")


def fmt_rss(kib):
    return f"{kib / 1024:.0f} MiB" if kib and kib > 0 else "n/a"


def write_report(args, rows, mach, command, started):
    by = {r["row"]: r for r in rows}
    lines = [
        "# Benchmarks",
        "",
        f"Measured {started} by `bench/run.py`. Every row comes from the same run on the same",
        f"machine; medians of {args.runs} runs each. Input: `{INPUT.relative_to(ROOT)}` "
        f"({rows[0]['sequences']} students, {rows[0]['interactions']:,} interactions); model `{MODEL.relative_to(ROOT)}`.",
        "",
        f"- Machine: {mach}",
        f"- Command: `{command}`",
        "",
        "| row | what | median s | sequences/s | interactions/s | padding efficiency | peak RSS | notes |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        pad = f"{r['padding_efficiency']:.4f}" if r.get("padding_efficiency") is not None else "n/a"
        runs = ", ".join(f"{x:.2f}" for x in r["runs_s"])
        lines.append(f"| {r['row']} | {r['name']} | {r['median_s']:.3f} | {r['sequences_per_s']:,.1f} | "
                     f"{r['interactions_per_s']:,.0f} | {pad} | {fmt_rss(r['peak_rss_kib'])} | {r['note']}; runs: {runs} s |")
    if "c" in by and "latency_p50_ms" in by["c"]:
        c = by["c"]
        lines += ["", f"Row c latency at a fixed offered load of {c['offered_load']:.0f} records/s "
                      f"({args.load:.0%} of row c's measured throughput), produce → result consumed, "
                      f"median over {args.runs} paced runs ({c['latency_samples']} records): "
                      f"**p50 {c['latency_p50_ms']:.0f} ms, p99 {c['latency_p99_ms']:.0f} ms**."]
    lines += ["", "## Ratios (interactions/s, same run)", ""]
    lines += [f"- {line}" for line in ratio_lines(by)]
    lines += ["", f"Goals: {GOALS}.", "",
              "## How each row is timed", "", "```", textwrap.dedent(__doc__.split("\n\n", 1)[1]).strip("\n").rstrip(), "```", ""]
    lines += tuning_section(ROOT / "BENCHMARKS.md")
    (ROOT / "BENCHMARKS.md").write_text("\n".join(lines))


def tuning_section(report):
    """The hand-written "## Tuning" section of the current report (up to the next "## " heading), kept
    across reruns: it records the sweeps that chose the defaults, which this script does not repeat."""
    if not report.exists():
        return []
    kept, inside = [], False
    for line in report.read_text().splitlines():
        if line.startswith("## "):
            inside = line.startswith(TUNING_HEADING)
        if inside:
            kept.append(line)
    return kept + [""] if kept else []


def ratio_lines(by):
    out = []

    def ratio(a, b, goal, fmt="{:.2f}"):
        if a in by and b in by:
            v = by[a]["interactions_per_s"] / by[b]["interactions_per_s"]
            out.append(f"{a}÷{b} = {fmt.format(v)} (goal {goal})")
    ratio("b", "a", "≥ 0.90")
    ratio("c", "a", "≥ 0.80")
    ratio("b", "d", "≥ 20×", "{:.1f}×")
    ratio("b", "e", "≥ 1.0×", "{:.2f}×")
    ratio("a", "f", "none: what bucketing buys", "{:.1f}×")
    ratio("a", "o", "none: what the compact predict_ids signature buys over the one-hot predict", "{:.2f}×")
    ratio("k", "a", "none: the chunk path over one call per length bucket", "{:.2f}×")
    ratio("x", "y", "≥ 2.5×", "{:.2f}×")
    ratio("x", "p", "≥ 0.85")
    if "r" in by:
        out.append(f"r peak RSS = {fmt_rss(by['r']['peak_rss_kib'])} on the split ×30 (goal ≤ 1 GiB)")
    for key in "abcdefo":
        if key in by:
            r = by[key]
            pad = f"{r['padding_efficiency']:.4f}" if r.get("padding_efficiency") is not None else "n/a"
            out.append(f"row {key}: padding efficiency {pad}, peak RSS {fmt_rss(r['peak_rss_kib'])}")
    if "b" in by:
        v = by["b"]["interactions_per_s"]
        out.append(f"b = {v:,.0f} interactions/s (goal ≥ 150,000 on 2 cores: {v / 150000:.0%} of it)")
    for key in ("b", "c"):
        if key in by:
            pad, rss = by[key]["padding_efficiency"], by[key]["peak_rss_kib"]
            out.append(f"{key}: padding {'meets' if pad is not None and pad >= 0.95 else 'misses'} ≥ 0.95, "
                       f"peak RSS {'meets' if 0 < rss <= 1024 * 1024 else 'misses'} ≤ 1 GiB")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="timed runs per row (median reported)")
    ap.add_argument("--rows", default="abcdefgmokpxyr", help="subset of rows to run, e.g. 'abf' (BENCHMARKS.md is written only for a-f unless --write; "
                    "'m' alone replaces only its own section)")
    ap.add_argument("--write", action="store_true", help="write BENCHMARKS.md even for a subset of rows")
    ap.add_argument("--batch-size", type=int, default=64, help="e's and f's batch size, also passed to a, b, c (the product's default is 64)")
    ap.add_argument("--max-padded-steps", type=int, default=32 * 1024, help="row e's budget on batch×steps (score's default)")
    ap.add_argument("--load", type=float, default=0.5, help="row c latency: offered load as a fraction of row c's throughput")
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--brokers", default=os.environ.get("DKTSCORE_KAFKA_BROKERS", "127.0.0.1:9092"))
    ap.add_argument("--m-clients", default="1,8,64,256", help="row m: concurrent clients, one point each")
    ap.add_argument("--m-duration", type=float, default=10, help="row m: recorded seconds per point")
    ap.add_argument("--m-warmup", type=float, default=2, help="row m: unrecorded seconds before each point")
    ap.add_argument("--dktscore", default=str(ROOT / "bin" / "dktscore"))
    ap.add_argument("--python-row", choices=["d", "e"], help=argparse.SUPPRESS)
    ap.add_argument("--input", help=argparse.SUPPRESS)  # the Python child's input (row y)
    args = ap.parse_args()
    if args.python_row:
        return python_child(args)

    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = shlex.join([".venv/bin/python", "bench/run.py"] + sys.argv[1:])
    if not sys.argv[1:]:
        command = f"make bench  # = {command}"
    mach = machine()
    print(f"machine: {mach}", flush=True)
    from dkt import data
    students = data.read_dkt3(INPUT)
    sequences, interactions = len(students), sum(len(s.skills) for s in students)
    values = [(f"s{i}".encode(), json.dumps({"student_id": f"s{i}", "skills": s.skills.tolist(),
                                              "correct": s.correct.tolist()}).encode()) for i, s in enumerate(students)]
    rows = []

    def done(rs):
        for r in rs:
            print(f"{r['row']}: {r['median_s']:.3f}s {r['sequences_per_s']:.1f} seq/s {r['interactions_per_s']:.0f} int/s "
                  f"padding {r['padding_efficiency']} RSS {fmt_rss(r['peak_rss_kib'])}"
                  + (f" latency p50 {r['latency_p50_ms']:.0f} ms p99 {r['latency_p99_ms']:.0f} ms at {r['offered_load']:.0f} rec/s"
                     if "latency_p50_ms" in r else ""), flush=True)
        rows.extend(rs)
    go = [k for k in "aofkp" if k in args.rows]
    if go:
        done(go_rows(args, go))
    if "b" in args.rows:
        done([score_row(args, sequences, interactions)])
    if "c" in args.rows:
        done([serve_row(args, values, sequences, interactions)])
    if "x" in args.rows:
        done([score_row(args, sequences, interactions, key="x", copies=10)])
    if "r" in args.rows:
        done([score_row(args, sequences, interactions, key="r", copies=30, runs_wanted=1)])
    if "d" in args.rows or "e" in args.rows or "y" in args.rows:
        done(python_rows(args))
    events = events_row.measure(args, run_child, MODEL, INPUT) if "g" in args.rows else None
    if events:
        print(events_row.summary(events), flush=True)
    front_door = frontdoor_row.measure(args, run_child, MODEL, INPUT, ENV) if "m" in args.rows else None
    if front_door:
        print(frontdoor_row.summary(front_door), flush=True)
    rows.sort(key=lambda r: r["row"])
    if (set("abcdef") <= set(args.rows) or args.write) and rows:
        write_report(args, rows, mach, command, started)
        if events:
            events_row.append_to(ROOT / "BENCHMARKS.md", events)
        if front_door:
            frontdoor_row.append_to(ROOT / "BENCHMARKS.md", front_door)
        print("wrote BENCHMARKS.md")
    elif front_door and set(args.rows) <= set("m"):
        frontdoor_row.replace_in(ROOT / "BENCHMARKS.md", front_door, command, mach)
        print("wrote the front-door section of BENCHMARKS.md")
    print("\nRatios (interactions/s, same run):")
    for line in ratio_lines({r["row"]: r for r in rows}):
        print("  " + line)


if __name__ == "__main__":
    main()
