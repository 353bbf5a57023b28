"""Row g of `make bench`: event mode's carried LSTM state against re-scoring the whole
history on every event, on the ASSISTments test split replayed as events.

`dktscore bench --rows g` measures both in one process (see cmd/dktscore/bench_events.go):
  carried  every event is one model.Step row; a poll's events are applied in rounds (one row per
           student per round), each partition (one per session) by its own goroutine
  rescore  every event re-scores the student's history up to it with model.Predict (length-bucketed
           batches, score's policy): O(history) per event, so it runs on every Nth event of the replay
"""
import json


def measure(args, run_child, model, input_path):
    """Runs row g in its own `dktscore bench` process and returns its JSON row."""
    _, stdout, _, _ = run_child([args.dktscore, "bench", "--model", model, "--input", input_path, "--rows", "g",
                                 "--runs", str(args.runs), "--json"])
    return json.loads(stdout.strip().splitlines()[-1])


def summary(g):
    c, r = g["carried"], g["rescore"]
    return (f"g: carried state {c['events_per_s']:,.0f} events/s, re-scoring the history {r['events_per_s']:,.1f} "
            f"events/s (every {r['sample_every']}th event): {g['speedup']:,.0f}×")


def section(g, provenance="same run as the table above"):
    """The BENCHMARKS.md section of row g."""
    c, r = g["carried"], g["rescore"]
    runs_c = ", ".join(f"{x:.2f}" for x in c["runs_s"])
    runs_r = ", ".join(f"{x:.2f}" for x in r["runs_s"])
    full_s = g["events"] / r["events_per_s"]
    return "\n".join([
        "",
        "## Event mode: carried state vs re-scoring the history per event",
        "",
        f"Row g, `dktscore bench --rows g`, {provenance}: the test split ({g['students']} students, {g['events']:,} "
        f"interactions) replayed as events, {g['replay']}; polls of {g['poll']} events per partition, "
        f"{g['sessions']} partitions (one per session, {g['threads']} intra-op thread(s) each) applied concurrently. "
        "Timed: the model runs and moving states in and out of them; not timed: building the replay and the batches.",
        "",
        "| way | events | median s | events/s | notes |",
        "|---|---:|---:|---:|---|",
        f"| carried state: one `step` row per event, rounds of one row per student per poll | {g['events']:,} | "
        f"{c['median_s']:.3f} | **{c['events_per_s']:,.0f}** | {c['step_runs']:,} step runs, {c['mean_rows_per_run']:.1f} "
        f"rows each; peak RSS {c['peak_rss_kib'] / 1024:.0f} MiB; runs: {runs_c} s |",
        f"| re-score the whole history per event: `{g.get('signature') or 'predict'}` on the prefix, length buckets | {r['events']:,} "
        f"(every {r['sample_every']}th) | {r['median_s']:.3f} | **{r['events_per_s']:,.1f}** | mean history "
        f"{r['mean_prefix']:.0f} steps ({r['full_mean_prefix']:.0f} over all events), {r['computed_steps']:,} computed "
        f"steps in {r['batches']} batches; peak RSS {g['peak_rss_kib'] / 1024:.0f} MiB; runs: {runs_r} s |",
        "",
        f"Carried state ÷ re-scoring = **{g['speedup']:,.0f}×** events/s. Re-scoring every one of the {g['events']:,} "
        f"events would take about {full_s / 60:,.0f} min at the sampled rate; carrying state takes {c['median_s']:.1f} s. "
        "The sample is systematic (every Nth event of the replay), so its mean history length matches the full "
        "replay's; re-scoring is batched across the whole sample, more than a live poll could, which favours it.",
        "",
    ])


def append_to(path, g, provenance="same run as the table above"):
    with open(path, "a") as f:
        f.write(section(g, provenance))
