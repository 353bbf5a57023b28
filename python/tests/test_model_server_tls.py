"""`dktscore model-server --ssl_config_file` as TF Serving's: a CA, a server certificate for
127.0.0.1/localhost and a client certificate made here with the openssl CLI; the origin's client
over grpc.secure_channel gets Python TF's answers, REST answers over HTTPS, client_verify refuses
clients without a certificate signed by custom_ca, a plaintext client gets nothing from the TLS
ports, and the server keeps answering good clients after every refusal. The operations endpoint
(DKTSCORE_HTTP_ADDR) stays plain HTTP."""
import shutil
import ssl
import subprocess
import urllib.error

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import prediction_service_pb2_grpc

from dkt import data, export
from conftest import ROOT
from model_server_util import MODEL_NAME, ModelServer, origin_inputs, pred_all, predict_request

ATOL = 2e-5  # as test_model_server.py: batching changes float32 rounding by up to 1.8e-5
TIMEOUT = 120
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"


def openssl(*args, cwd):
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True)


def make_ca(directory, name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "1", "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            cwd=directory)


def make_cert(directory, name, ca, extensions):
    """name.key and name.pem: a certificate signed by ca with the given X.509v3 extensions."""
    (directory / f"{name}.ext").write_text(extensions)
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=directory)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-set_serial", "2",
            "-days", "1", "-out", f"{name}.pem", "-extfile", f"{name}.ext", cwd=directory)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """PEM bytes: the CA, the server's certificate and key (SAN 127.0.0.1, localhost), a client
    certificate and key signed by the CA, and a client certificate signed by another CA."""
    d = tmp_path_factory.mktemp("pki")
    make_ca(d, "ca")
    make_ca(d, "rogue-ca")
    make_cert(d, "server", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    make_cert(d, "client", "ca", "extendedKeyUsage=clientAuth\n")
    make_cert(d, "rogue", "rogue-ca", "extendedKeyUsage=clientAuth\n")
    return {p.stem + p.suffix.replace(".", "_"): p.read_bytes() for p in d.iterdir() if p.suffix in (".pem", ".key")}


def ssl_config(tmp_path, pki, client_verify):
    """A TF Serving SSLConfig text proto: the PEM text itself in each field, as TF Serving takes it."""
    path = tmp_path / "ssl_config.txt"
    text = "".join(f'{field}: "{value.decode().encode("unicode_escape").decode()}"\n' for field, value in
                   (("server_key", pki["server_key"]), ("server_cert", pki["server_pem"]), ("custom_ca", pki["ca_pem"])))
    path.write_text(text + f"client_verify: {str(client_verify).lower()}\n")
    return path


def client(pki, cert=None):
    """(gRPC channel credentials, SSL context for urllib) trusting the CA, presenting cert if given."""
    context = ssl.create_default_context(cadata=pki["ca_pem"].decode())
    if cert is None:
        return grpc.ssl_channel_credentials(root_certificates=pki["ca_pem"]), context
    return (grpc.ssl_channel_credentials(root_certificates=pki["ca_pem"], private_key=pki[f"{cert}_key"],
                                         certificate_chain=pki[f"{cert}_pem"]), context)


def ssl_context(pki, tmp_path, cert=None):
    context = ssl.create_default_context(cadata=pki["ca_pem"].decode())
    if cert is not None:
        (tmp_path / f"{cert}.pem").write_bytes(pki[f"{cert}_pem"])
        (tmp_path / f"{cert}.key").write_bytes(pki[f"{cert}_key"])
        context.load_cert_chain(tmp_path / f"{cert}.pem", tmp_path / f"{cert}.key")
    return context


@pytest.fixture(scope="module")
def students(test_split):
    """A few short test-split students: TLS is what is under test, not long sequences."""
    every = data.read_dkt3(test_split)
    return [s for s in every if 5 <= len(s.skills) <= 300][:4]


@pytest.fixture(scope="module")
def references(students, bundled_model):
    """Python TF's pred_all for each student alone (B=1)."""
    predictor = export.Predictor(bundled_model)
    try:
        return [predictor.run("predict", **origin_inputs([s]))["pred_all"][0] for s in students]
    finally:
        predictor.close()


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "dkt"
    path.mkdir()
    shutil.copytree(ROOT / "models" / "dkt" / "1", path / "1")
    return path


def start(tmp_path_factory, base, pki, client_verify, cert):
    tmp = tmp_path_factory.mktemp("model-server-tls")
    credentials = client(pki, cert)[0]
    s = ModelServer(tmp, base, f"--ssl_config_file={ssl_config(tmp, pki, client_verify)}",
                    credentials=credentials, ssl_context=ssl_context(pki, tmp, cert))
    s.wait_ready()
    return s


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, base, pki, references):
    s = start(tmp_path_factory, base, pki, client_verify=False, cert=None)
    try:
        yield s
    finally:
        code = s.stop()
    assert code == 0, f"model-server exited {code} on SIGTERM: {s.read_log()}"


@pytest.fixture(scope="module")
def mtls_server(tmp_path_factory, base, pki, references):
    s = start(tmp_path_factory, base, pki, client_verify=True, cert="client")
    try:
        yield s
    finally:
        code = s.stop()
    assert code == 0, f"model-server exited {code} on SIGTERM: {s.read_log()}"


def assert_answers(stub, students, references):
    for i, (student, want) in enumerate(zip(students, references)):
        got = pred_all(stub.Predict(predict_request(origin_inputs([student])), timeout=TIMEOUT))[0]
        assert got.shape == want.shape, (i, got.shape, want.shape)
        diff = float(np.abs(got - want).max())
        assert diff <= ATOL, f"student {i}: |diff| {diff:.3g} against Python TF"


def assert_refused(channel, student):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    try:
        with pytest.raises(grpc.RpcError) as error:
            stub.Predict(predict_request(origin_inputs([student])), timeout=20)
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE, error.value
    finally:
        channel.close()


def test_origin_client_over_tls_matches_python_tf(tls_server, students, references):
    assert_answers(tls_server.stub, students, references)
    assert tls_server.status().model_version_status[0].version == 1


def test_rest_over_https_answers(tls_server, students, references):
    status, body = tls_server.rest(f"/v1/models/{MODEL_NAME}")
    assert status == 200 and body["model_version_status"][0]["state"] == "AVAILABLE", body
    inputs = origin_inputs([students[0]])
    status, body = tls_server.rest(f"/v1/models/{MODEL_NAME}:predict",
                                   {"signature_name": "predict", "inputs": {k: v.tolist() for k, v in inputs.items()}})
    assert status == 200, body
    got = np.array(body["outputs"] if not isinstance(body["outputs"], dict) else body["outputs"]["pred_all"], np.float32)
    assert float(np.abs(got[0] - references[0]).max()) <= ATOL


def test_plaintext_clients_get_nothing_from_the_tls_ports(tls_server, students, references):
    assert_refused(grpc.insecure_channel(f"127.0.0.1:{tls_server.grpc_port}"), students[0])
    # Go's HTTPS server answers a plain HTTP request with a bare 400, never the API.
    status, body = tls_server.rest(f"/v1/models/{MODEL_NAME}", port=tls_server.rest_port, timeout=10)
    assert status == 400 and "HTTPS" in str(body) and "model_version_status" not in str(body), (status, body)
    assert_answers(tls_server.stub, students[:1], references[:1])


def test_ops_endpoint_stays_plain_http(tls_server):
    for path in ("/healthz", "/readyz"):
        status, _ = tls_server.rest(path, port=tls_server.http_port, timeout=10)
        assert status == 200, path


def test_client_verify_refuses_clients_without_a_certificate_from_custom_ca(mtls_server, pki, students, references):
    anonymous, anonymous_https = client(pki)
    rogue, _ = client(pki, "rogue")
    target = f"127.0.0.1:{mtls_server.grpc_port}"
    assert_refused(grpc.secure_channel(target, anonymous), students[0])
    assert_refused(grpc.secure_channel(target, rogue), students[0])
    assert_refused(grpc.insecure_channel(target), students[0])
    with pytest.raises(OSError):  # the TLS handshake fails: ssl.SSLError, or the connection reset under it
        status, body = mtls_server.rest(f"/v1/models/{MODEL_NAME}", ssl_context=anonymous_https, timeout=10)
        raise AssertionError(f"a REST client without a certificate got {status}: {body}")
    # The client certificate opens both ports, and the refusals left the server answering.
    assert_answers(mtls_server.stub, students, references)
    channel = mtls_server.new_channel()
    try:
        assert_answers(prediction_service_pb2_grpc.PredictionServiceStub(channel), students[:1], references[:1])
    finally:
        channel.close()
    status, body = mtls_server.rest(f"/v1/models/{MODEL_NAME}")
    assert status == 200, body
