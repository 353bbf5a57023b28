"""Row m of `make bench`: the TF Serving front door, `dktscore model-server`, under the origin's
traffic: closed-loop clients, each sending one student per Predict request (B = 1, T = the student's
own length, the one-hot `predict` signature, tensors as tensor_content) and the next as soon as the
answer arrives.

Two model-server processes run side by side: batching on (its defaults) and batching off
(`--enable_batching=false`: every sequence runs alone, what TF Serving does for this signature).
For each --m-clients concurrency, `dktscore bench --rows m` (bench/frontdoor.go) is run against
each server, alternating on/off so both see the same machine load; each point runs --m-warmup
unrecorded, then --m-duration recorded. The sweep runs --runs times; each point reports its round
with the median requests/s. After each point's window the server's own metrics give the
batches it formed (dktscore_batch_size, dktscore_batch_flushes_total by reason) and how busy its
sessions were (dktscore_inference_seconds). The origin's DataGenerator padded every student to the
longest of the data set; these requests are not padded (`dktscore bench --pad-to` sends that).
"""
import datetime
import json
import os
import pathlib
import shlex
import subprocess
import tempfile

import kafka_bench  # free_port, wait_ready

ROOT = pathlib.Path(__file__).resolve().parents[1]

HEADING = "## Front door: model-server under one-sequence requests"
GOAL_SPEEDUP, GOAL_P99_MS, GOAL_P50_REL, GOAL_P50_ABS_MS = 4.0, 250.0, 0.10, 1.0
MODES = (("on", []), ("off", ["--enable_batching=false"]))


class ModelServer:
    """One `dktscore model-server` process on free ports."""

    def __init__(self, dktscore, model, env, extra):
        self.grpc = f"127.0.0.1:{kafka_bench.free_port()}"
        self.ops = f"127.0.0.1:{kafka_bench.free_port()}"
        self.cmd = [dktscore, "model-server", f"--port={self.grpc.rsplit(':', 1)[1]}", "--rest_api_port=0",
                    "--model_name=builder", f"--model_base_path={model}", *extra]
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.cmd, env=dict(env, DKTSCORE_HTTP_ADDR=self.ops), stdout=self.log, stderr=self.log)
        if not kafka_bench.wait_ready(self.ops, self.proc):
            raise RuntimeError(f"{shlex.join(map(str, self.cmd))} did not become ready:\n{self.tail()}")

    def tail(self):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-3000:]

    def close(self):
        """Stops the server (SIGTERM) and returns its peak RSS in KiB."""
        self.proc.terminate()
        _, _, usage = os.wait4(self.proc.pid, 0)
        self.log.close()
        return usage.ru_maxrss


def measure(args, run_child, model, input_path, env):
    """Runs every point --runs times; returns {"points": {mode: [the median round's row per clients]}, ...}."""
    servers = {}
    try:
        for mode, extra in MODES:
            servers[mode] = ModelServer(args.dktscore, model, env, extra)
        rounds = {(mode, clients): [] for mode, _ in MODES for clients in args.m_clients.split(",")}
        for i in range(args.runs):
            for clients in args.m_clients.split(","):
                for mode, _ in MODES:
                    s = servers[mode]
                    cmd = [args.dktscore, "bench", "--rows", "m", "--input", input_path, "--target", s.grpc,
                           "--clients", clients, "--duration", f"{args.m_duration}s", "--warmup-time", f"{args.m_warmup}s",
                           "--metrics", f"http://{s.ops}/metrics", "--json"]
                    try:
                        _, stdout, _, _ = run_child(cmd)
                    except RuntimeError as e:
                        raise RuntimeError(f"{e}\nmodel-server ({mode}) log:\n{s.tail()}") from None
                    r = json.loads(stdout.strip().splitlines()[-1])
                    rounds[(mode, clients)].append(r)
                    print(f"m round {i + 1} " + point_line(mode, r), flush=True)
    finally:
        rss = {mode: s.close() for mode, s in servers.items()}
    points = {mode: [] for mode, _ in MODES}
    for (mode, _), rs in rounds.items():
        points[mode].append(median_round(rs))
    return dict(points=points, peak_rss_kib=rss, duration_s=args.m_duration, warmup_s=args.m_warmup, runs=args.runs,
                commands={mode: shlex.join(map(str, s.cmd)).replace(f"{ROOT}/", "") for mode, s in servers.items()},
                measured=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))


def median_round(rs):
    """The round with the median requests/s (the lower middle one of an even count), whole, so that its
    latencies and batch sizes belong to its throughput; every round's requests/s goes with it."""
    ranked = sorted(rs, key=lambda r: r["requests_per_s"])
    return dict(ranked[(len(ranked) - 1) // 2], rounds_requests_per_s=[r["requests_per_s"] for r in rs])


def errors_text(r):
    return ", ".join(f"{code} {n}" for code, n in sorted(r["errors"].items())) or "0"


def point_line(mode, r):
    w = r.get("server") or {}
    return (f"batching {mode:3} {r['clients']:4} clients: {r['requests_per_s']:8.1f} req/s {r['interactions_per_s']:9.0f} int/s "
            f"p50 {r['p50_ms']:7.1f} ms p99 {r['p99_ms']:7.1f} ms errors {errors_text(r)}; mean batch {w.get('mean_batch_size', 0):.2f}, "
            f"flushes {w.get('flushes')}, busy sessions {w.get('busy_sessions', 0):.2f}, "
            f"cores server {w.get('cpu_s', 0) / r['duration_s']:.2f} client {r['client_cpu_s'] / r['duration_s']:.2f}")


def by_clients(m, mode, clients):
    return next((r for r in m["points"][mode] if r["clients"] == clients), None)


def ratio_lines(m):
    """The goals' ratios, where their points were measured."""
    out = []
    on, off = by_clients(m, "on", 64), by_clients(m, "off", 64)
    if on and off and on["requests"] and off["requests"]:
        speedup = on["requests_per_s"] / off["requests_per_s"]
        out.append(f"64 clients: requests/s on ÷ off = {speedup:.2f}× (goal ≥ {GOAL_SPEEDUP:.0f}×: "
                   f"{'met' if speedup >= GOAL_SPEEDUP else f'missed, {speedup / GOAL_SPEEDUP:.0%} of it'})")
        p99 = on["p99_ms"]
        out.append(f"64 clients: p99 with batching on = {p99:.0f} ms (goal ≤ {GOAL_P99_MS:.0f} ms: "
                   f"{'met' if p99 <= GOAL_P99_MS else f'missed by {p99 - GOAL_P99_MS:.0f} ms, {p99 / GOAL_P99_MS:.1f}× the goal'}); "
                   f"off: {off['p99_ms']:.0f} ms")
    on, off = by_clients(m, "on", 1), by_clients(m, "off", 1)
    if on and off and on["requests"] and off["requests"]:
        limit = off["p50_ms"] * (1 + GOAL_P50_REL) + GOAL_P50_ABS_MS
        added = on["p50_ms"] - off["p50_ms"]
        verdict = "met" if on["p50_ms"] <= limit else f"missed by {on['p50_ms'] - limit:.1f} ms"
        out.append(f"1 client: p50 on {on['p50_ms']:.1f} ms vs off {off['p50_ms']:.1f} ms, batching adds {added:+.1f} ms "
                   f"({added / off['p50_ms']:+.0%}) (goal: on ≤ off + 10% + 1 ms = {limit:.1f} ms: {verdict})")
    return out


def summary(m):
    return "\n".join("m: " + line for line in ratio_lines(m))


def section(m, provenance, command=None, machine=None):
    """The BENCHMARKS.md section of row m."""
    first = next(iter(m["points"].values()))[0]
    lines = ["", HEADING, "",
             f"Row m, {provenance}: `dktscore bench --rows m` (bench/frontdoor.go) against two `dktscore model-server` "
             f"processes on this machine, batching on (its defaults) and off (`--enable_batching=false`, every sequence "
             f"alone, as TF Serving must run this signature). Closed loop: each client sends one student per Predict "
             f"request on the origin's one-hot `predict` signature (B = 1, T = the student's own length, not padded to "
             f"the data set's longest as the origin's DataGenerator did), round-robin over the {first['students']} "
             f"students of the test split from its own offset, and the next request when the answer (pred_all with "
             f"T·num_skills values) arrives. Each point: {m['warmup_s']:g} s unrecorded, then {m['duration_s']:g} s "
             f"recorded (the requests answered in it); on and off alternate point by point, and the whole sweep runs {m['runs']} times: each row is the "
             f"round with the median requests/s, whole (every round's requests/s in the last column). Mean batch, flushes and busy sessions are the "
             f"server's own metrics over the window (busy sessions = session run seconds ÷ window; 2 sessions); server "
             f"and client cores are each process's CPU seconds ÷ window: the load generator runs on the same machine "
             f"and takes its share of the cores.", ""]
    if machine:
        lines += [f"- Machine: {machine}"]
    if command:
        lines += [f"- Command: `{command}`"]
    lines += [f"- Servers: `{m['commands']['on']}` and `… --enable_batching=false`; peak RSS "
              f"{m['peak_rss_kib']['on'] / 1024:.0f} MiB (on), {m['peak_rss_kib']['off'] / 1024:.0f} MiB (off)", "",
              "| clients | batching | requests/s | interactions/s | p50 ms | p99 ms | errors | mean batch | flushes by reason | busy sessions | server cores | client cores | rounds, requests/s |",
              "|---:|---|---:|---:|---:|---:|---|---:|---|---:|---:|---:|---|"]
    clients = sorted({r["clients"] for rows in m["points"].values() for r in rows})
    for n in clients:
        for mode, _ in MODES:
            r = by_clients(m, mode, n)
            if r is None:
                continue
            w = r.get("server") or {}
            flushes = ", ".join(f"{k} {v}" for k, v in sorted(w.get("flushes", {}).items())) or "–"
            lines.append(f"| {n} | {mode} | {r['requests_per_s']:,.1f} | {r['interactions_per_s']:,.0f} | {r['p50_ms']:.1f} | "
                         f"{r['p99_ms']:.1f} | {errors_text(r)} | {w.get('mean_batch_size', 0):.2f} | {flushes} | "
                         f"{w.get('busy_sessions', 0):.2f} | {w.get('cpu_s', 0) / r['duration_s']:.2f} | "
                         f"{r['client_cpu_s'] / r['duration_s']:.2f} | "
                         f"{', '.join(f'{x:.1f}' for x in r['rounds_requests_per_s'])} |")
    lines += ["", "Goals:", ""] + [f"- {line}" for line in ratio_lines(m)] + [""]
    return "\n".join(lines)


def append_to(path, m, provenance="same run as the table above"):
    with open(path, "a") as f:
        f.write(section(m, provenance))


def replace_in(path, m, command, machine):
    """Replaces row m's section of an existing report (or appends it), leaving the rest as it is:
    `bench/run.py --rows m` measures the front door without re-running the other rows."""
    kept, inside = [], False
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    for line in text.splitlines():
        if line.startswith("## "):
            inside = line.startswith(HEADING)
        if not inside:
            kept.append(line)
    while kept and kept[-1] == "":
        kept.pop()
    path.write_text("\n".join(kept) + "\n" + section(m, f"measured on its own at {m['measured']}", command, machine))
