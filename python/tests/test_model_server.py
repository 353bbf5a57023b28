"""`dktscore model-server` as a drop-in for TensorFlow Serving, called with the origin's own
client library (tensorflow-serving-api): one sequence per Predict request from many threads,
answered as Python TensorFlow answers the same request; REST, metadata and status as TF
Serving gives them; a new version picked up while requests keep flowing; hostile requests
refused with TF Serving's status codes and a message naming the input."""
import concurrent.futures
import os
import random
import shutil
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

from dkt import data, export
from conftest import ROOT
from model_server_util import (MODEL_NAME, NUM_SKILLS, ModelServer, ids_inputs, origin_inputs, pred_all,
                               predict_request)

# float32 LSTM state accumulates rounding over thousands of steps, and how depends on the batch:
# Python TF's own `predict` signature fed the same student in a batch of two or more rows differs
# from its B=1 answer by up to 1.8e-5 on this split (students 129 and 360). A server that batches
# requests together therefore cannot match B=1 to 1e-5 everywhere; every position is held to 2e-5,
# and all but a handful of students to 1e-5 (test a).
ATOL = 2e-5
TIGHT_ATOL = 1e-5
TIMEOUT = 180  # seconds per Predict; the 8,214-step student on 2 shared cores
SIGNATURE_INPUTS = {"input_x", "target_id", "max_steps", "sequence_len", "keep_prob", "batch_size"}
# dktscore's bound on one gRPC message or REST body (its default, stated so the tests below know it);
# TF Serving itself accepts gRPC messages up to 2 GiB.
MAX_REQUEST_BYTES = 32 << 20
AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE


def padded_steps(i, student):
    """Every 5th student is sent padded 7 steps past its length: padded positions are compared too."""
    return len(student.skills) + 7 if i % 5 == 0 else len(student.skills)


@pytest.fixture(scope="module")
def students(test_split):
    return data.read_dkt3(test_split)


@pytest.fixture(scope="module")
def predictor(bundled_model):
    p = export.Predictor(bundled_model)
    yield p
    p.close()


def python_tf(predictor, inputs, signature="predict"):
    """Python TF's answer to the same request: the SavedModel's signature fed the same tensors."""
    return predictor.run(signature, **inputs)["pred_all"]


@pytest.fixture(scope="module")
def references(students, predictor):
    """pred_all of every student sent alone (B=1) at its request's padded length, by Python TF.
    Two threads: Session.run releases the GIL and batch-1 LSTM steps leave a core idle."""
    def one(i):
        return python_tf(predictor, origin_inputs([students[i]], padded_steps(i, students[i])))[0]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        return list(pool.map(one, range(len(students))))


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A TF Serving base path (NAME/VERSION layout) holding a copy of the bundled model as version 1."""
    path = tmp_path_factory.mktemp("models") / "dkt"
    path.mkdir()
    shutil.copytree(ROOT / "models" / "dkt" / "1", path / "1")
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory, base, references):
    # references first: Python TF and the server would otherwise share the two cores.
    s = ModelServer(tmp_path_factory.mktemp("model-server"), base, f"--max-request-bytes={MAX_REQUEST_BYTES}")
    try:
        s.wait_ready()
        yield s
    finally:
        code = s.stop()
    assert code == 0, f"model-server exited {code} on SIGTERM: {s.read_log()}"


def assert_close(got, want, what):
    assert got.shape == want.shape, f"{what}: shape {got.shape}, Python TF {want.shape}"
    diff = np.abs(got - want)
    worst = np.unravel_index(np.argmax(diff), diff.shape)
    assert diff[worst] <= ATOL, f"{what}: |diff| {diff[worst]:.3g} at {worst}: got {got[worst]}, Python TF {want[worst]}"


# a. The origin's client, unchanged in substance, every test-split student, 8 threads.

def test_origin_client_every_student_concurrently_matches_python_tf(server, students, references):
    assert max(len(s.skills) for s in students) >= 8000 and min(len(s.skills) for s in students) == 1
    order = list(range(len(students)))
    random.Random(7).shuffle(order)
    local = threading.local()

    def send(i):
        # The origin's client: its own channel and stub per worker, make_tensor_proto per input,
        # Predict.future(request, timeout).result(), outputs read from float_val.
        if not hasattr(local, "stub"):
            local.channel, local.stub = server.new_stub()
        request = predict_request(origin_inputs([students[i]], padded_steps(i, students[i])))
        response = local.stub.Predict.future(request, TIMEOUT).result()
        assert response.model_spec.name == MODEL_NAME and response.model_spec.version.value == 1, response.model_spec
        assert response.model_spec.signature_name == "predict", response.model_spec
        got = pred_all(response)
        assert got.shape[0] == 1
        assert_close(got[0], references[i], f"student {i} (n={len(students[i].skills)}, T={padded_steps(i, students[i])})")
        return float(np.abs(got[0] - references[i]).max())

    started = time.time()
    failures, worst = [], {}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = {pool.submit(send, i): i for i in order}
        for future in concurrent.futures.as_completed(futures):
            try:
                worst[futures[future]] = future.result()
            except Exception as e:  # noqa: BLE001 — every failure is reported below
                failures.append((futures[future], repr(e)[:400]))
    elapsed = time.time() - started
    loose = sorted(i for i, d in worst.items() if d > TIGHT_ATOL)
    print(f"{len(students)} one-student requests from 8 threads in {elapsed:.1f}s; "
          f"max |diff| {max(worst.values(), default=0):.3g}; beyond {TIGHT_ATOL}: students {loose}")
    assert not failures, f"{len(failures)} of {len(students)} requests failed, first: {sorted(failures)[:5]}\n{server.read_log()}"
    assert len(loose) <= len(students) // 100, f"students beyond {TIGHT_ATOL}: {loose}"


# b. Several rows in one request.

def test_multi_row_request_matches_python_tf(server, students, predictor):
    rows = [students[i] for i in (0, 3, 17, 42, 99)]
    inputs = origin_inputs(rows, max(len(s.skills) for s in rows) + 3)
    response = server.stub.Predict(predict_request(inputs), timeout=TIMEOUT)
    got = pred_all(response)
    assert got.shape == (len(rows), int(inputs["max_steps"]), NUM_SKILLS)
    assert_close(got, python_tf(predictor, inputs), "5-row request")


def test_explicit_version_answers(server, students, references):
    """model_spec.version set to the served version is answered by it (gRPC and REST, Predict and metadata)."""
    i = 10
    request = predict_request(origin_inputs([students[i]], padded_steps(i, students[i])), version=1)
    response = server.stub.Predict(request, timeout=TIMEOUT)
    assert response.model_spec.version.value == 1, response.model_spec
    assert_close(pred_all(response)[0], references[i], f"student {i} asking for version 1")
    metadata = get_model_metadata_pb2.GetModelMetadataRequest()
    metadata.model_spec.name = MODEL_NAME
    metadata.model_spec.version.value = 1
    metadata.metadata_field.append("signature_def")
    assert server.stub.GetModelMetadata(metadata, timeout=30).model_spec.version.value == 1
    status, body = server.rest(f"/v1/models/{MODEL_NAME}/versions/1/metadata")
    assert status == 200 and str(body["model_spec"]["version"]) == "1", body


def test_repeated_field_encoding_matches_tensor_content(server, students, predictor):
    """TensorProtos whose values come in int_val/float_val (not tensor_content) decode the same."""
    rows = [students[5], students[6]]
    inputs = origin_inputs(rows)
    request = predict_request(inputs)
    for name in ("target_id", "sequence_len"):
        proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_INT32,
                                       tensor_shape=tf.TensorShape(inputs[name].shape).as_proto())
        proto.int_val.extend(inputs[name].ravel().tolist())
        request.inputs[name].CopyFrom(proto)
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=tf.TensorShape(inputs["input_x"].shape).as_proto())
    proto.float_val.extend(inputs["input_x"].ravel().tolist())
    request.inputs["input_x"].CopyFrom(proto)
    got = pred_all(server.stub.Predict(request, timeout=TIMEOUT))
    assert_close(got, python_tf(predictor, inputs), "int_val/float_val request")


def test_predict_ids_signature_matches_python_tf(server, students, predictor):
    rows = [students[1], students[2], students[8]]
    inputs = ids_inputs(rows)
    response = server.stub.Predict(predict_request(inputs, signature="predict_ids"), timeout=TIMEOUT)
    assert response.model_spec.signature_name == "predict_ids"
    assert_close(pred_all(response), python_tf(predictor, inputs, "predict_ids"), "predict_ids")


def test_empty_signature_name_means_serving_default_which_the_model_lacks(server, students):
    with pytest.raises(grpc.RpcError) as error:
        server.stub.Predict(predict_request(origin_inputs([students[0]]), signature=""), timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, error.value
    assert "serving_default" in error.value.details(), error.value.details()


# c. REST, metadata and status as TF Serving gives them.

def rest_inputs(inputs):
    return {name: value.tolist() for name, value in inputs.items()}


def rest_outputs(body):
    """Columnar answer: {"outputs": value} for one output (TF Serving drops the name); a {name: value} dict is accepted too."""
    assert isinstance(body, dict) and "outputs" in body, body if not isinstance(body, dict) else list(body)
    outputs = body["outputs"]
    if isinstance(outputs, dict):
        outputs = outputs["pred_all"]
    return np.array(outputs, dtype=np.float32)


@pytest.mark.parametrize("path", [f"/v1/models/{MODEL_NAME}:predict", f"/v1/models/{MODEL_NAME}/versions/1:predict"])
def test_rest_predict_equals_grpc(server, students, path):
    for i in (0, 4, 11, 123):
        inputs = origin_inputs([students[i]], len(students[i].skills) + (i % 3))
        via_grpc = pred_all(server.stub.Predict(predict_request(inputs), timeout=TIMEOUT))
        status, body = server.rest(path, {"signature_name": "predict", "inputs": rest_inputs(inputs)})
        assert status == 200, body
        assert_close(rest_outputs(body), via_grpc, f"REST {path} student {i}")


def test_rest_row_format_refused_with_reason(server, students):
    inputs = origin_inputs([students[0]])
    instances = [{name: value[0].tolist() if np.ndim(value) else value.item() for name, value in inputs.items()}]
    status, body = server.rest(f"/v1/models/{MODEL_NAME}:predict", {"signature_name": "predict", "instances": instances})
    assert status == 400, body
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert "instances" in body["error"] or "inputs" in body["error"], body


@pytest.mark.parametrize("path,code", [
    (f"/v1/models/nosuchmodel:predict", 404),
    (f"/v1/models/{MODEL_NAME}/versions/9:predict", 404),
])
def test_rest_unknown_model_or_version_is_404(server, students, path, code):
    inputs = origin_inputs([students[0]])
    status, body = server.rest(path, {"signature_name": "predict", "inputs": rest_inputs(inputs)})
    assert status == code, body
    assert isinstance(body, dict) and body.get("error"), body


def test_rest_bad_input_is_400_naming_it(server, students):
    inputs = origin_inputs([students[0]])
    inputs["batch_size"] = np.int32(3)
    status, body = server.rest(f"/v1/models/{MODEL_NAME}:predict", {"signature_name": "predict", "inputs": rest_inputs(inputs)})
    assert status == 400, body
    assert "batch_size" in body["error"], body
    status, body = server.rest(f"/v1/models/{MODEL_NAME}:predict", b"{not json")
    assert status == 400 and body.get("error"), body


def test_grpc_model_status_and_metadata(server, predictor):
    status = server.status()
    versions = {(v.version, v.state, v.status.error_code) for v in status.model_version_status}
    assert versions == {(1, AVAILABLE, 0)}, status

    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = MODEL_NAME
    request.metadata_field.append("signature_def")
    metadata = server.stub.GetModelMetadata(request, timeout=30)
    assert metadata.model_spec.name == MODEL_NAME and metadata.model_spec.version.value == 1, metadata.model_spec
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert metadata.metadata["signature_def"].Unpack(signatures), metadata.metadata["signature_def"].type_url
    # TF Serving answers the SavedModel's signature_def map as stored.
    assert set(signatures.signature_def) == set(predictor.signatures)
    for name, want in predictor.signatures.items():
        assert signatures.signature_def[name] == want, name
    predict = signatures.signature_def["predict"]
    assert set(predict.inputs) == SIGNATURE_INPUTS and set(predict.outputs) == {"pred_all"}
    assert [d.size for d in predict.inputs["input_x"].tensor_shape.dim] == [-1, -1, 2 * NUM_SKILLS]
    assert predict.method_name == "tensorflow/serving/predict"


def test_grpc_metadata_unknown_field_and_model(server):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = MODEL_NAME
    request.metadata_field.append("no_such_field")
    with pytest.raises(grpc.RpcError) as error:
        server.stub.GetModelMetadata(request, timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, error.value
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "nosuchmodel"
    request.metadata_field.append("signature_def")
    with pytest.raises(grpc.RpcError) as error:
        server.stub.GetModelMetadata(request, timeout=30)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND, error.value


def test_rest_status_and_metadata(server, predictor):
    status, body = server.rest(f"/v1/models/{MODEL_NAME}")
    assert status == 200, body
    versions = body["model_version_status"]
    assert [(str(v["version"]), v["state"]) for v in versions] == [("1", "AVAILABLE")], body
    assert versions[0]["status"]["error_code"] == "OK", body

    status, body = server.rest(f"/v1/models/{MODEL_NAME}/versions/1")
    assert status == 200 and body["model_version_status"][0]["state"] == "AVAILABLE", body

    status, body = server.rest(f"/v1/models/{MODEL_NAME}/metadata")
    assert status == 200, body
    assert body["model_spec"]["name"] == MODEL_NAME and str(body["model_spec"]["version"]) == "1", body["model_spec"]
    # proto3 JSON of the SignatureDefMap, as TF Serving writes it: parses back to the SavedModel's.
    signatures = json_format.ParseDict(body["metadata"]["signature_def"], get_model_metadata_pb2.SignatureDefMap())
    for name, want in predictor.signatures.items():
        assert signatures.signature_def[name] == want, name

    status, body = server.rest("/v1/models/nosuchmodel")
    assert status == 404 and body.get("error"), body


def test_grpc_health_and_ops_endpoints(server):
    # grpc.health.v1.Health/Check with an empty HealthCheckRequest; SERVING is status=1 (field 1 varint).
    check = server.channel.unary_unary("/grpc.health.v1.Health/Check")
    assert check(b"", timeout=10) == b"\x08\x01"
    for port in (server.http_port, server.rest_port):
        for path in ("/healthz", "/readyz", "/metrics"):
            status, body = server.rest(path, port=port, timeout=10)
            assert status == 200, (port, path, body)
    status, text = server.rest("/metrics", port=server.http_port)
    assert isinstance(text, str) and "# TYPE" in text, text[:500]


# e. Hostile requests: TF Serving's status code, a message naming the input, and the server
# answers a good request afterwards.

def with_input(name, value):
    def mutate(inputs):
        inputs[name] = value(inputs) if callable(value) else value
    return mutate


def without(name):
    def mutate(inputs):
        del inputs[name]
    return mutate


def float_proto(shape, content):
    return tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_content=content,
                                  tensor_shape=tensor_shape_pb2.TensorShapeProto(
                                      dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in shape]))


def two_ones_in_a_step(inputs):
    x = inputs["input_x"].copy()
    x[0, 0, (np.argmax(x[0, 0]) + 1) % (2 * NUM_SKILLS)] = 1.0
    return x


HOSTILE = [
    # id, request spec change, inputs change, code, text the message must carry
    ("unknown-model", dict(model="nosuchmodel"), None, grpc.StatusCode.NOT_FOUND, "nosuchmodel"),
    ("unknown-version", dict(version=7), None, grpc.StatusCode.NOT_FOUND, "7"),
    ("unknown-signature", dict(signature="nosuchsig"), None, grpc.StatusCode.INVALID_ARGUMENT, "nosuchsig"),
    ("input_x-int32", {}, with_input("input_x", lambda i: i["input_x"].astype(np.int32)),
     grpc.StatusCode.INVALID_ARGUMENT, "input_x"),
    ("input_x-rank2", {}, with_input("input_x", lambda i: i["input_x"][0]), grpc.StatusCode.INVALID_ARGUMENT, "input_x"),
    ("input_x-width", {}, with_input("input_x", lambda i: i["input_x"][:, :, :-1]),
     grpc.StatusCode.INVALID_ARGUMENT, "input_x"),
    ("batch_size-not-rows", {}, with_input("batch_size", np.int32(2)), grpc.StatusCode.INVALID_ARGUMENT, "batch_size"),
    ("max_steps-not-time-axis", {}, with_input("max_steps", lambda i: np.int32(i["max_steps"] + 1)),
     grpc.StatusCode.INVALID_ARGUMENT, "max_steps"),
    ("sequence_len-zero", {}, with_input("sequence_len", np.array([0], dtype=np.int32)),
     grpc.StatusCode.INVALID_ARGUMENT, "sequence_len"),
    ("sequence_len-past-max_steps", {}, with_input("sequence_len", lambda i: np.array([i["max_steps"] + 1], dtype=np.int32)),
     grpc.StatusCode.INVALID_ARGUMENT, "sequence_len"),
    ("sequence_len-rows", {}, with_input("sequence_len", lambda i: np.repeat(i["sequence_len"], 2)),
     grpc.StatusCode.INVALID_ARGUMENT, "sequence_len"),
    ("truncated-tensor_content", {}, with_input("input_x", lambda i: float_proto(i["input_x"].shape, i["input_x"].tobytes()[:-4])),
     grpc.StatusCode.INVALID_ARGUMENT, "input_x"),
    ("negative-dim", {}, with_input("input_x", lambda i: float_proto([1, -3, 2 * NUM_SKILLS], b"")),
     grpc.StatusCode.INVALID_ARGUMENT, "input_x"),
    ("huge-dims", {}, with_input("input_x", lambda i: float_proto([1 << 20, 1 << 30, 2 * NUM_SKILLS], b"\0" * 64)),
     grpc.StatusCode.INVALID_ARGUMENT, "input_x"),
    ("keep_prob-0.5", {}, with_input("keep_prob", np.float32(0.5)), grpc.StatusCode.INVALID_ARGUMENT, "keep_prob"),
    ("keep_prob-float64", {}, with_input("keep_prob", np.float64(1.0)), grpc.StatusCode.INVALID_ARGUMENT, "keep_prob"),
    ("empty-request", {}, lambda inputs: inputs.clear(), grpc.StatusCode.INVALID_ARGUMENT, "input_x"),
    ("missing-target_id", {}, without("target_id"), grpc.StatusCode.INVALID_ARGUMENT, "target_id"),
    ("unknown-input", {}, with_input("bogus_input", np.int32(1)), grpc.StatusCode.INVALID_ARGUMENT, "bogus_input"),
    ("not-one-hot", {}, with_input("input_x", two_ones_in_a_step), grpc.StatusCode.INVALID_ARGUMENT, "input_x"),
]


@pytest.mark.parametrize("spec,mutate,code,text", [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_hostile_request_refused_and_server_keeps_serving(server, students, references, spec, mutate, code, text):
    student = students[1]  # sent padded past its length (padded_steps), so padding rules apply
    inputs = origin_inputs([student], len(student.skills) + 2)
    if mutate:
        mutate(inputs)
    with pytest.raises(grpc.RpcError) as error:
        server.stub.Predict(predict_request(inputs, **spec), timeout=60)
    assert error.value.code() == code, (error.value.code(), error.value.details())
    assert text in error.value.details(), error.value.details()
    good = server.stub.Predict(predict_request(origin_inputs([students[0]], padded_steps(0, students[0]))), timeout=60)
    assert_close(pred_all(good)[0], references[0], "good request after a hostile one")


def test_oversized_rest_body_refused(server, students, references):
    # 64 MiB of JSON numbers in input_x; refused once --max-request-bytes are read, not after all 64 MiB.
    filler = b"0," * (32 << 20)
    body = b'{"signature_name": "predict", "inputs": {"input_x": [[[' + filler + b'0]]]}}'
    status, answer, sent = server.post_streaming(f"/v1/models/{MODEL_NAME}:predict", body)
    assert status in (400, 413), (status, str(answer)[:300])
    assert isinstance(answer, dict) and answer.get("error"), str(answer)[:300]
    print(f"64 MiB body refused with {status} after {sent >> 20} MiB sent: {answer['error']}")
    good = server.stub.Predict(predict_request(origin_inputs([students[0]], padded_steps(0, students[0]))), timeout=60)
    assert_close(pred_all(good)[0], references[0], "good request after an oversized body")


def test_grpc_message_over_the_receive_limit_refused(server, students, references):
    steps = MAX_REQUEST_BYTES // (2 * NUM_SKILLS * 4) + 1000  # input_x alone is over the limit
    inputs = origin_inputs([students[0]], steps)
    request = predict_request(inputs)
    assert request.ByteSize() > MAX_REQUEST_BYTES
    with pytest.raises(grpc.RpcError) as error:
        server.stub.Predict(request, timeout=60)
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (error.value.code(), error.value.details())
    good = server.stub.Predict(predict_request(origin_inputs([students[0]], padded_steps(0, students[0]))), timeout=60)
    assert_close(pred_all(good)[0], references[0], "good request after an oversized message")



def test_batching_disabled_still_answers_as_python_tf(tmp_path, base, students, references):
    """--enable_batching=false: every sequence scored alone, same answers."""
    server = ModelServer(tmp_path, base, "--enable_batching=false", batching=False)
    picks = list(range(0, len(students), 20))
    try:
        server.wait_ready()

        def send(i):
            request = predict_request(origin_inputs([students[i]], padded_steps(i, students[i])))
            assert_close(pred_all(server.stub.Predict.future(request, TIMEOUT).result())[0], references[i], f"student {i}")
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(send, picks))
    finally:
        code = server.stop()
    assert code == 0, server.read_log()


def test_full_queue_answers_resource_exhausted_at_once(tmp_path, students, references):
    """A request that finds max_enqueued_batches × max_batch_size sequences waiting is refused at once
    with RESOURCE_EXHAUSTED (HTTP 429), never queued without bound; the others are answered correctly.
    (TF Serving's batch scheduler says UNAVAILABLE here; dktscore says what ran out.)"""
    base = tmp_path / "dkt"
    base.mkdir()
    shutil.copytree(ROOT / "models" / "dkt" / "1", base / "1")
    params = tmp_path / "tiny-queue.txt"
    params.write_text("max_batch_size { value: 1 }\nbatch_timeout_micros { value: 100 }\n"
                      "max_enqueued_batches { value: 1 }\nnum_batch_threads { value: 1 }\n")
    server = ModelServer(tmp_path, base, "--enable_batching=true", f"--batching_parameters_file={params}", batching=False)
    i = max(range(len(students)), key=lambda k: len(students[k].skills) if len(students[k].skills) < 1500 else 0)
    request = predict_request(origin_inputs([students[i]], padded_steps(i, students[i])))
    try:
        server.wait_ready()
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            futures = [pool.submit(lambda: server.stub.Predict.future(request, TIMEOUT).result()) for _ in range(16)]
            answered, refused = 0, []
            for future in futures:
                try:
                    assert_close(pred_all(future.result())[0], references[i], f"student {i}")
                    answered += 1
                except grpc.RpcError as e:
                    refused.append((e.code(), e.details()))
    finally:
        code = server.stop()
    assert answered >= 1 and refused, (answered, refused)
    assert {c for c, _ in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}, refused[:3]
    assert all("queue is full" in d for _, d in refused), refused[:3]
    assert code == 0, server.read_log()


# d. A new version picked up while clients keep sending, no request failing.

def test_new_version_hot_reloaded_under_load(tmp_path, students, references):
    base = tmp_path / "dkt"
    base.mkdir()
    shutil.copytree(ROOT / "models" / "dkt" / "1", base / "1")
    server = ModelServer(tmp_path, base)
    stop = threading.Event()
    failures, seen = [], []  # seen: per thread, the versions answered in order
    short = [i for i, s in enumerate(students) if len(s.skills) <= 200]

    def client(k):
        channel, stub = server.new_stub()
        versions, rng = [], random.Random(k)
        seen.append(versions)
        while not stop.is_set():
            i = rng.choice(short)
            try:
                request = predict_request(origin_inputs([students[i]], padded_steps(i, students[i])))
                response = stub.Predict.future(request, 60).result()
                versions.append(response.model_spec.version.value)
                assert_close(pred_all(response)[0], references[i], f"student {i}")
            except Exception as e:  # noqa: BLE001 — every failure is reported below
                failures.append((i, len(versions), repr(e)[:400]))
        channel.close()

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(4)]
    try:
        server.wait_ready()
        for t in threads:
            t.start()
        time.sleep(3)
        assert all(seen) and not failures, (failures[:3], [len(v) for v in seen])
        # Copied under a name the server ignores, then renamed: version 2 appears complete, at once.
        shutil.copytree(ROOT / "models" / "dkt" / "1", base / ".incoming-2")
        published = time.time()
        os.rename(base / ".incoming-2", base / "2")

        def latest_answered():
            return all(v and v[-1] == 2 for v in seen)

        deadline = published + 30
        status = None
        while time.time() < deadline:
            status = server.status()
            if any(v.version == 2 and v.state == AVAILABLE for v in status.model_version_status) and latest_answered():
                break
            time.sleep(0.2)
        took = time.time() - published
        print(f"version 2 available and answering {took:.1f}s after publishing; status: "
              f"{[(v.version, get_model_status_pb2.ModelVersionStatus.State.Name(v.state)) for v in status.model_version_status]}")
        assert any(v.version == 2 and v.state == AVAILABLE for v in status.model_version_status), status
        assert latest_answered(), f"last versions answered per thread: {[v[-1:] for v in seen]}"
        assert took <= 15, f"version 2 took {took:.1f}s to serve with --file_system_poll_wait_seconds=1"
        time.sleep(1)
    finally:
        stop.set()
        for t in threads:
            t.join(120)
        code = server.stop()
    assert not failures, f"{len(failures)} requests failed during the switch, first: {failures[:5]}\n{server.read_log()}"
    for versions in seen:
        assert versions[0] == 1 and versions[-1] == 2, versions
        # one client's requests never go back to version 1 once 2 answered
        assert versions == sorted(versions), versions
    assert code == 0, f"model-server exited {code} on SIGTERM: {server.read_log()}"
