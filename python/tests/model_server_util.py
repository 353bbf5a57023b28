"""A `dktscore model-server` process for the tests, and requests built the way the origin's
client builds them (tf.make_tensor_proto on the six inputs of the "predict" signature)."""
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc

from conftest import ROOT

DKTSCORE = ROOT / "bin" / "dktscore"
MODEL_NAME = "builder"
NUM_SKILLS = 124
# The 8,214-step student's pred_all is ~4 MB, over gRPC's 4 MiB default.
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", -1)]
BATCHING = """max_batch_size { value: 64 }
batch_timeout_micros { value: 2000 }
max_enqueued_batches { value: 16 }
num_batch_threads { value: 2 }
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def origin_inputs(students, steps=None):
    """The predict signature's six inputs for students padded to steps (default: the longest),
    as numpy values: exactly what the origin's client feeds tf.make_tensor_proto."""
    steps = steps or max(len(s.skills) for s in students)
    batch = len(students)
    input_x = np.zeros((batch, steps, 2 * NUM_SKILLS), dtype=np.float32)
    target_id = np.zeros((batch, steps), dtype=np.int32)
    sequence_len = np.zeros(batch, dtype=np.int32)
    for b, s in enumerate(students):
        n = len(s.skills)
        input_x[b, np.arange(n), s.skills + NUM_SKILLS * s.correct] = 1.0
        target_id[b, : n - 1] = s.skills[1:]
        sequence_len[b] = n
    return dict(input_x=input_x, target_id=target_id, max_steps=np.int32(steps), sequence_len=sequence_len,
                keep_prob=np.float32(1.0), batch_size=np.int32(batch))


def ids_inputs(students, steps=None):
    """The compact predict_ids signature's inputs: skill_id, correct [B, T], sequence_len [B]."""
    steps = steps or max(len(s.skills) for s in students)
    skill_id = np.zeros((len(students), steps), dtype=np.int32)
    correct = np.zeros((len(students), steps), dtype=np.int32)
    for b, s in enumerate(students):
        skill_id[b, : len(s.skills)] = s.skills
        correct[b, : len(s.skills)] = s.correct
    return dict(skill_id=skill_id, correct=correct,
                sequence_len=np.array([len(s.skills) for s in students], dtype=np.int32))


def predict_request(inputs, signature="predict", model=MODEL_NAME, version=None):
    """A PredictRequest as the origin builds it: one tf.make_tensor_proto per input."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    for name, value in inputs.items():
        if isinstance(value, tensor_pb2.TensorProto):
            request.inputs[name].CopyFrom(value)  # built by hand
        else:
            value = np.asarray(value)
            request.inputs[name].CopyFrom(tf.make_tensor_proto(value, dtype=tf.as_dtype(value.dtype), shape=value.shape))
    return request


def pred_all(response, output="pred_all"):
    """Reads the output as the origin does: float_val, reshaped with the response's dims."""
    tensor = response.outputs[output]
    shape = [d.size for d in tensor.tensor_shape.dim]
    assert tensor.dtype == tf.float32.as_datatype_enum, tensor.dtype
    assert len(tensor.float_val) == int(np.prod(shape)), (
        f"{output}: {len(tensor.float_val)} float_val for shape {shape} (tensor_content {len(tensor.tensor_content)} "
        "bytes); TF Serving answers in float_val and the origin's client reads float_val")
    return np.array(tensor.float_val, dtype=np.float32).reshape(shape)


class ModelServer:
    """A `dktscore model-server` process with TF Serving's flags; stop() sends SIGTERM."""

    def __init__(self, tmp_path, base, *flags, batching=True, poll_seconds=1, credentials=None, ssl_context=None):
        """credentials (grpc.ssl_channel_credentials) and ssl_context (for REST over HTTPS) are the
        client side of a server started with --ssl_config_file; without them the client is plaintext."""
        if not DKTSCORE.exists():
            raise AssertionError(f"{DKTSCORE} missing: run `make build` (make test does)")
        self.grpc_port, self.rest_port, self.http_port = free_port(), free_port(), free_port()
        args = [str(DKTSCORE), "model-server", f"--port={self.grpc_port}", f"--rest_api_port={self.rest_port}",
                f"--model_name={MODEL_NAME}", f"--model_base_path={base}",
                f"--file_system_poll_wait_seconds={poll_seconds}"]
        if batching:
            path = tmp_path / "batching.txt"
            path.write_text(BATCHING)
            args += ["--enable_batching=true", f"--batching_parameters_file={path}"]
        args += list(flags)
        env = dict(os.environ, DKTSCORE_HTTP_ADDR=f"127.0.0.1:{self.http_port}", TF_CPP_MIN_LOG_LEVEL="2")
        self.log = open(tmp_path / f"model-server-{self.grpc_port}.log", "w")
        self.proc = subprocess.Popen(args, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.credentials, self.ssl_context = credentials, ssl_context
        self.channel = self.new_channel()
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)

    def new_channel(self, credentials=None):
        """A channel to the gRPC port: TLS with credentials (default: the server's own client's), else plaintext."""
        credentials = credentials or self.credentials
        target = f"127.0.0.1:{self.grpc_port}"
        if credentials is None:
            return grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
        return grpc.secure_channel(target, credentials, options=CHANNEL_OPTIONS)

    def new_stub(self):
        """A client of its own (its own channel), as separate origin workers have."""
        channel = self.new_channel()
        return channel, prediction_service_pb2_grpc.PredictionServiceStub(channel)

    def rest(self, path, body=None, method=None, port=None, timeout=120, ssl_context=None):
        """(HTTP status, parsed JSON or raw text) of a REST call; HTTPS with an SSL context
        (default: the server's own client's) on the REST port."""
        data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
        context = ssl_context or (self.ssl_context if port is None else None)
        scheme = "https" if context is not None else "http"
        request = urllib.request.Request(f"{scheme}://127.0.0.1:{port or self.rest_port}{path}", data=data,
                                         method=method or ("POST" if data is not None else "GET"),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=context) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def post_streaming(self, path, body, chunk=1 << 20, timeout=60):
        """POSTs body in chunks and stops sending once the server answers, as a careful HTTP
        client does with a body the server refuses early: (HTTP status, parsed JSON body, bytes sent)."""
        import http.client
        import select
        with socket.create_connection(("127.0.0.1", self.rest_port), timeout=timeout) as conn:
            conn.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(body)}\r\n\r\n".encode())
            sent = 0
            while sent < len(body):
                if select.select([conn], [], [], 0)[0]:
                    break  # the answer is here: send no more
                try:
                    sent += conn.send(body[sent:sent + chunk])
                except (BrokenPipeError, ConnectionResetError):
                    break
            response = http.client.HTTPResponse(conn)
            response.begin()
            raw = response.read()
        try:
            return response.status, json.loads(raw), sent
        except ValueError:
            return response.status, raw.decode(errors="replace"), sent

    def status(self):
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = MODEL_NAME
        return self.models.GetModelStatus(request, timeout=10)

    def wait_ready(self, timeout=120):
        """Ready when GET /v1/models/builder answers 200 with a version AVAILABLE (TF Serving's status)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            assert self.proc.poll() is None, f"model-server exited with {self.proc.returncode}: {self.read_log()}"
            try:
                status, body = self.rest(f"/v1/models/{MODEL_NAME}", timeout=2)
                if status == 200 and any(v.get("state") == "AVAILABLE" for v in body.get("model_version_status", [])):
                    return
            except (OSError, AttributeError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"model-server not ready in {timeout}s: {self.read_log()}")

    def stop(self, timeout=60):
        """SIGTERM: finish in-flight requests and exit; returns the exit code."""
        self.channel.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
                raise AssertionError(f"model-server ignored SIGTERM for {timeout}s: {self.read_log()}")
        return self.proc.returncode

    def read_log(self, tail=4000):
        self.log.flush()
        return open(self.log.name).read()[-tail:]
