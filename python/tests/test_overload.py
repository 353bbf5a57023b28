"""Overload: `dktscore serve` offered far more than it can score, and `dktscore model-server` called
by ten times as many concurrent clients as it can hold. Both must bound their memory, lose
nothing, and (the front door) refuse the overflow at once instead of queueing it.

Nothing here asserts a speed: serve's scoring rate is measured while the test runs and the load is
sized from it, and the front door's latencies are compared with each other (refusals against
accepted calls, 10× the clients against 1×), never with a number of seconds."""
import asyncio
import shutil
import threading
import time
import urllib.request

import grpc
import numpy as np
import pyarrow as pa
import pyarrow.ipc
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from tensorflow_serving.apis import predict_pb2

from dkt import data
from conftest import ROOT
from kafka_util import BROKERS, Serve, consume_all, create_topics, ensure_broker, sequence_record, unique
from model_server_util import CHANNEL_OPTIONS, ModelServer, origin_inputs, pred_all, predict_request

GiB = 1 << 30
# The bound README states for a serve worker with the default settings, whatever the backlog.
SERVE_RSS_BOUND = 1 * GiB
PARTITIONS = 3
# Load: the backlog is kept at >= OVERLOAD_FACTOR x what serve scores per second, for at least
# OVERLOADED_SECONDS (counting the drain, while the backlog is still that deep).
OVERLOAD_FACTOR = 10
OVERLOADED_SECONDS = 60
SAMPLE_SECONDS = 0.5


def rss_bytes(pid):
    """The process's resident set (VmRSS), in bytes; 0 once it has exited."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except FileNotFoundError:
        pass
    return 0


class Sampler:
    """Samples a process every SAMPLE_SECONDS in a thread: its RSS and, with metrics, the
    Prometheus values the caller picks (a failed scrape keeps the previous values)."""

    def __init__(self, pid, metrics=None):
        self.pid, self.metrics = pid, metrics
        self.samples = []  # (time, rss, {name: value})
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        values = {}
        while not self.stopped.is_set():
            if self.metrics is not None:
                try:
                    values = self.metrics()
                except OSError:
                    pass
            self.samples.append((time.time(), rss_bytes(self.pid), values))
            self.stopped.wait(SAMPLE_SECONDS)

    def latest(self, name, default=0.0):
        return self.samples[-1][2].get(name, default) if self.samples else default

    def value_ago(self, name, seconds):
        """name's value about seconds ago (the oldest sample if the run is younger)."""
        cutoff = time.time() - seconds
        older = [s for s in self.samples if s[0] <= cutoff] or self.samples[:1]
        return older[-1][2].get(name, 0.0) if older else 0.0

    def max_rss(self):
        return max(rss for _, rss, _ in self.samples)

    def stop(self):
        self.stopped.set()
        self.thread.join(10)


# --- serve ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def students(test_split):
    return data.read_dkt3(test_split)


class Offered:
    """Produces the real students, cycled, to the input topic and counts what it offered."""

    def __init__(self, topic, students):
        self.topic, self.students = topic, students
        self.values = [(f"s{i}".encode(), sequence_record(f"s{i}", s.skills, s.correct)) for i, s in enumerate(students)]
        self.producer = Producer({"bootstrap.servers": BROKERS, "enable.idempotence": True, "linger.ms": 5})
        self.count = 0
        self.failed = []

    def produce(self, n):
        def delivered(err, _msg):
            if err is not None:
                self.failed.append(str(err))
        for _ in range(int(n)):
            key, value = self.values[self.count % len(self.values)]
            self.producer.produce(self.topic, value=value, key=key, on_delivery=delivered)
            self.count += 1
            if self.count % 500 == 0:
                self.producer.poll(0)
        self.producer.poll(0)

    def flush(self):
        assert self.producer.flush(60) == 0 and not self.failed, f"the test's producer could not deliver: {self.failed[:3]}"


def end_offsets(topic):
    consumer = Consumer({"bootstrap.servers": BROKERS, "group.id": unique("watermarks")})
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in range(PARTITIONS)}
    finally:
        consumer.close()


def result_positions(messages):
    """(source_partition, source_offset) of every result row, duplicates kept."""
    positions = []
    for msg in messages:
        table = pa.ipc.open_stream(msg.value()).read_all()
        positions.extend(zip(table.column("source_partition").to_pylist(), table.column("source_offset").to_pylist()))
    return positions


def test_serve_under_a_10x_backlog_bounds_memory_drains_and_scores_every_input_once(tmp_path, students):
    ensure_broker()
    inp, out, dlq = unique("overload-in"), unique("overload-out"), unique("overload-dlq")
    create_topics(PARTITIONS, inp, out, dlq)
    serve = Serve(tmp_path, inp, out, dlq, unique("g"))
    offered = Offered(inp, students)
    sampler = None
    try:
        serve.wait_ready()
        sampler = Sampler(serve.proc.pid, serve.metrics)
        scored = "dktscore_scored_total"

        # A first backlog, to measure how fast serve scores on this machine now.
        offered.produce(3 * len(students))
        offered.flush()
        deadline = time.time() + 120
        while sampler.latest(scored) < 200:
            assert time.time() < deadline and serve.proc.poll() is None, f"serve scored nothing: {serve.read_log()}"
            time.sleep(SAMPLE_SECONDS)
        time.sleep(5)
        rate = max(1.0, (sampler.latest(scored) - sampler.value_ago(scored, 5)) / 5)
        load_started = time.time()

        # Overload: top the backlog up to 12x the rate, then offer twice what serve scores, at the
        # rate it scores now, until the backlog already offered keeps serve overloaded for the
        # rest of OVERLOADED_SECONDS (or two minutes have passed).
        offered.produce(max(0, 12 * rate - (offered.count - sampler.latest(scored))))
        offered_at = [(load_started, offered.count)]
        # The rate is the mean since the load began, as the check after the drain reckons it;
        # the 20 s margin covers serve speeding up (other work on the machine ending).
        scored_at_start, overloaded_so_far = sampler.latest(scored), 0.0
        while time.time() - load_started < 120:
            assert serve.proc.poll() is None, f"serve exited under load: {serve.read_log()}"
            time.sleep(SAMPLE_SECONDS)
            elapsed = time.time() - load_started
            if elapsed >= 5:
                rate = max(1.0, (sampler.latest(scored) - scored_at_start) / elapsed)
            backlog = offered.count - sampler.latest(scored)
            if backlog >= OVERLOAD_FACTOR * rate:
                overloaded_so_far += SAMPLE_SECONDS
            if overloaded_so_far + (backlog - OVERLOAD_FACTOR * rate) / rate >= OVERLOADED_SECONDS + 20:
                break
            offered.produce(2 * rate * SAMPLE_SECONDS)
            offered_at.append((time.time(), offered.count))
        offered.flush()
        produced_until = time.time()

        # Drain: every offered input scored and its offset committed.
        deadline = time.time() + 400
        while not (sampler.latest(scored) >= offered.count and sampler.latest("dktscore_commit_lag", -1) == 0):
            assert time.time() < deadline, (f"serve did not drain: {sampler.latest(scored):.0f} of {offered.count} scored, "
                                            f"lag {sampler.latest('dktscore_commit_lag', -1):.0f}")
            assert serve.proc.poll() is None, f"serve exited under load: {serve.read_log()}"
            time.sleep(SAMPLE_SECONDS)
        drained = time.time()
        metrics = serve.metrics()
    finally:
        if sampler:
            sampler.stop()
        code = serve.stop()
    assert code == 0, serve.read_log()

    # The offered load: the backlog (offered − scored) against serve's mean rate over the run.
    scoring = [(t, v.get(scored, 0.0)) for t, _, v in sampler.samples if load_started <= t <= drained]
    mean_rate = (scoring[-1][1] - scoring[0][1]) / (scoring[-1][0] - scoring[0][0])
    overloaded = 0.0
    for (t, done), (t_next, _) in zip(scoring, scoring[1:]):
        offered_then = [n for when, n in offered_at if when <= t][-1]
        if offered_then - done >= OVERLOAD_FACTOR * mean_rate:
            overloaded += t_next - t
    lags = [(t, v["dktscore_commit_lag"]) for t, _, v in sampler.samples if "dktscore_commit_lag" in v]
    peak_time, peak_lag = max(lags, key=lambda s: s[1])
    first_lag = next(lag for t, lag in lags if t >= load_started)
    print(f"\nserve overload: {offered.count} inputs offered over {produced_until - load_started:.0f} s, drained "
          f"{drained - produced_until:.0f} s later; mean rate {mean_rate:.0f} inputs/s; commit lag {first_lag:.0f} at the "
          f"start of the load, peak {peak_lag:.0f} ({peak_lag / mean_rate:.0f} s of work) {peak_time - load_started:.0f} s "
          f"in, 0 at the end; backlog >= {OVERLOAD_FACTOR}x the mean rate for {overloaded:.0f} s; "
          f"RSS max {sampler.max_rss() / 2**20:.0f} MiB (bound {SERVE_RSS_BOUND / 2**20:.0f} MiB)")

    assert sampler.max_rss() <= SERVE_RSS_BOUND, f"serve's RSS reached {sampler.max_rss() / 2**20:.0f} MiB"
    assert overloaded >= OVERLOADED_SECONDS, (f"the backlog was 10x serve's mean rate for only {overloaded:.0f} s: "
                                              "serve sped up while the load was offered, so it was not overloaded long enough")
    assert peak_lag >= OVERLOAD_FACTOR * mean_rate, "the backlog never reached 10x what serve scores per second"
    assert peak_lag > first_lag and peak_time > load_started, "the lag did not grow while the load was offered"
    assert lags[-1][1] == 0, "the lag did not drain"

    # Exactly one result per input: the results' source positions are exactly the input offsets.
    positions = result_positions(consume_all(out, idle=4, timeout=180))
    ends = end_offsets(inp)
    assert sum(ends.values()) == offered.count
    want = {(p, o) for p, end in ends.items() for o in range(end)}
    assert len(positions) == len(set(positions)), f"{len(positions) - len(set(positions))} inputs scored twice"
    assert set(positions) == want, f"{len(want - set(positions))} inputs have no result"
    assert metrics["dktscore_dead_lettered_total"] == 0, "a valid input was dead-lettered"
    assert sum(end_offsets(dlq).values()) == 0, "a valid input was dead-lettered"


# --- model-server -----------------------------------------------------------------------------------

# A small front door, so that 10x its capacity is a number of clients one test process can run:
# 4 sequences per batch, 2 batches' worth queued (8 sequences), one session.
FRONT_DOOR = ("max_batch_size { value: 4 }\nbatch_timeout_micros { value: 2000 }\n"
              "max_enqueued_batches { value: 2 }\nnum_batch_threads { value: 1 }\n")
# What it holds at once: the queue, plus one batch being scored per session.
CAPACITY = 2 * 4 + 4
MODEL_SERVER_RSS_BOUND = 1 * GiB
CALL_TIMEOUT = 120  # seconds: a call that takes longer has hung
ATOL = 2e-5  # test_model_server.py: a batched answer against Python TF's B=1 answer
ROUNDS, ROUND_SECONDS = 3, 4
BACKOFF = 0.2  # seconds a refused client waits before it tries again, as a polite client does


def front_door_load(port, requests, clients, seconds):
    """clients concurrent clients, each on its own channel, calling Predict with requests in turn
    for seconds; a refused client backs off BACKOFF. Returns [(student index, code, latency s,
    response or None)], the response kept for the first answer per student (checked after the load).

    The clients are coroutines on one asyncio loop (grpc.aio): a hundred Python threads would
    spend the time they measure waiting for the GIL, not for the server."""
    calls, kept = [], set()

    async def client(k, stop):
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=CHANNEL_OPTIONS) as channel:
            # Requests go serialized once, answers stay bytes until checked: the clients' time is the calls'.
            predict = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
            i = k
            while time.time() < stop:
                index, request = requests[i % len(requests)]
                i += clients
                started = time.perf_counter()
                try:
                    response, code = await predict(request, timeout=CALL_TIMEOUT), grpc.StatusCode.OK
                except grpc.aio.AioRpcError as e:
                    response, code = None, e.code()
                took = time.perf_counter() - started
                if response is not None and index not in kept:
                    kept.add(index)
                    response = predict_pb2.PredictResponse.FromString(response)
                else:
                    response = None
                calls.append((index, code, took, response))
                if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    await asyncio.sleep(BACKOFF)

    async def run():
        stop = time.time() + seconds
        # A call that never ends fails the test here instead of hanging it.
        await asyncio.wait_for(asyncio.gather(*(client(k, stop) for k in range(clients))), seconds + CALL_TIMEOUT + 30)

    asyncio.run(run())
    return calls


def scrape(port):
    """The Prometheus values at port's /metrics, by series."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return {line.rpartition(" ")[0]: float(line.rpartition(" ")[2]) for line in text.splitlines()
            if line and not line.startswith("#")}


def percentile(values, q):
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def test_model_server_under_10x_its_capacity_refuses_the_overflow_at_once_and_bounds_memory_and_latency(
        tmp_path, students, bundled_model):
    from dkt import export
    base = tmp_path / "dkt"
    base.mkdir()
    shutil.copytree(ROOT / "models" / "dkt" / "1", base / "1")
    params = tmp_path / "front-door.txt"
    params.write_text(FRONT_DOOR)
    # 32 real students of 50 to 200 interactions, each request one sequence as the origin sends it,
    # and Python TF's answer to each (B=1), computed before the server shares the cores.
    picks = [i for i, s in enumerate(students) if 50 <= len(s.skills) <= 200][:32]
    requests = [(i, predict_request(origin_inputs([students[i]])).SerializeToString()) for i in picks]
    predictor = export.Predictor(bundled_model)
    try:
        references = {i: predictor.run("predict", **origin_inputs([students[i]]))["pred_all"][0] for i in picks}
    finally:
        predictor.close()

    server = ModelServer(tmp_path, base, "--enable_batching=true", f"--batching_parameters_file={params}", batching=False)
    sampler = None
    try:
        server.wait_ready()
        sampler = Sampler(server.proc.pid)
        # Rounds of 1x and 10x the capacity in turn, so that a change in what else runs on the
        # machine weighs on both alike.
        at_capacity, overloaded, rss_1x, rss_10x = [], [], 0, 0
        for _ in range(ROUNDS):
            since = len(sampler.samples)
            at_capacity += front_door_load(server.grpc_port, requests, CAPACITY, ROUND_SECONDS)
            rss_1x = max([rss_1x] + [rss for _, rss, _ in sampler.samples[since:]])
            since = len(sampler.samples)
            overloaded += front_door_load(server.grpc_port, requests, 10 * CAPACITY, 2 * ROUND_SECONDS)
            rss_10x = max([rss_10x] + [rss for _, rss, _ in sampler.samples[since:]])
        metrics = scrape(server.http_port)
    finally:
        if sampler:
            sampler.stop()
        code = server.stop()
    assert code == 0, server.read_log()

    # Every call was answered, OK or RESOURCE_EXHAUSTED, and every OK answer is Python TF's.
    for phase in (at_capacity, overloaded):
        other = {code for _, code, _, _ in phase} - {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
        assert not other, f"calls answered {other}, not OK or RESOURCE_EXHAUSTED"
        for index, _, _, response in phase:
            if response is not None:
                np.testing.assert_allclose(pred_all(response)[0], references[index], atol=ATOL, rtol=0,
                                           err_msg=f"student {index}")
    accepted_1x = [took for _, code, took, _ in at_capacity if code == grpc.StatusCode.OK]
    accepted = [took for _, code, took, _ in overloaded if code == grpc.StatusCode.OK]
    refused = [took for _, code, took, _ in overloaded if code == grpc.StatusCode.RESOURCE_EXHAUSTED]
    # The server counted what the clients saw.
    for code, name in [(grpc.StatusCode.OK, "OK"), (grpc.StatusCode.RESOURCE_EXHAUSTED, "RESOURCE_EXHAUSTED")]:
        seen = sum(c == code for _, c, _, _ in at_capacity + overloaded)
        assert metrics.get(f'dktscore_requests_total{{api="grpc",code="{name}",method="Predict"}}', 0) == seen, name

    print(f"\nmodel-server front door (capacity {CAPACITY} sequences): {CAPACITY} clients, {len(accepted_1x)} answered, "
          f"p50 {percentile(accepted_1x, 50) * 1e3:.0f} ms, p99 {percentile(accepted_1x, 99) * 1e3:.0f} ms, RSS max "
          f"{rss_1x / 2**20:.0f} MiB; {10 * CAPACITY} clients: {len(accepted)} answered (p50 "
          f"{percentile(accepted, 50) * 1e3:.0f} ms, p99 {percentile(accepted, 99) * 1e3:.0f} ms), {len(refused)} "
          f"RESOURCE_EXHAUSTED (p50 {percentile(refused, 50) * 1e3:.1f} ms, p99 {percentile(refused, 99) * 1e3:.1f} ms), "
          f"RSS max {rss_10x / 2**20:.0f} MiB")
    assert accepted and refused, "under 10x its capacity the server must answer some calls and refuse others"
    # Refused at once: a refusal does not wait for the batches ahead of it, as an accepted call does.
    assert percentile(refused, 50) * 4 <= percentile(accepted, 50), "RESOURCE_EXHAUSTED came no faster than an answer"
    assert percentile(refused, 99) < percentile(accepted, 99), "RESOURCE_EXHAUSTED came no faster than an answer"
    # Accepted calls wait only for what the bounded queue holds. Were the overflow queued instead,
    # 10x the clients would wait about 10x as long for the same throughput (Little's law); the
    # bounds leave room for the refused clients' own work on the same two cores.
    assert percentile(accepted, 50) <= 4 * percentile(accepted_1x, 50), "accepted calls waited longer as the load grew"
    assert percentile(accepted, 99) <= 5 * percentile(accepted_1x, 99), "accepted calls waited longer as the load grew"
    assert rss_10x <= MODEL_SERVER_RSS_BOUND, f"model-server's RSS reached {rss_10x / 2**20:.0f} MiB"
    assert rss_10x <= rss_1x + 128 * 2**20, f"RSS grew from {rss_1x / 2**20:.0f} to {rss_10x / 2**20:.0f} MiB with the load"
