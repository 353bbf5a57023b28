# syntax=docker/dockerfile:1
# dktscore for hosts without a GPU, on the tensorflow-cpu wheel, the same
# library `make setup` links.
#
#   docker build -t dktscore:cpu .
#   docker run -v "$PWD/models:/models:ro" -e DKTSCORE_KAFKA_BROKERS=kafka:9092 dktscore:cpu
#   docker run -p 8500:8500 -p 8501:8501 -v "$PWD/models:/models:ro" dktscore:cpu \
#     model-server --port=8500 --rest_api_port=8501 --model_name=builder --model_base_path=/models/dkt
ARG GO_VERSION=1.26.8
ARG TF_VERSION=2.18.1

FROM golang:${GO_VERSION}-bookworm AS build
ARG TF_VERSION
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir "tensorflow-cpu==${TF_VERSION}"
COPY scripts/link-tensorflow /usr/local/bin/link-tensorflow
RUN link-tensorflow /opt/venv /opt/tflib \
 && mkdir -p /out/lib \
 && cp -L /opt/tflib/libtensorflow_cc.so.2 /opt/tflib/libtensorflow_framework.so.2 /out/lib/
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ENV CGO_ENABLED=1 \
    CGO_CFLAGS=-I/opt/tflib/include \
    CGO_LDFLAGS="-L/opt/tflib -Wl,-rpath,/opt/dktscore/lib"
RUN go build -trimpath -o /out/dktscore ./cmd/dktscore

# Same Debian release as golang:*-bookworm, so the glibc the binary was linked
# against is the one it runs on.
FROM debian:bookworm-slim
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl libstdc++6 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 dktscore \
 && useradd --system --uid 10001 --gid dktscore --home-dir /nonexistent --shell /usr/sbin/nologin dktscore
COPY --from=build /out/lib/ /opt/dktscore/lib/
COPY --from=build /out/dktscore /usr/local/bin/dktscore
ENV DKTSCORE_MODEL=/models/dkt \
    DKTSCORE_HTTP_ADDR=:8080 \
    DKTSCORE_GPUS=none \
    TF_CPP_MIN_LOG_LEVEL=1
# 8080: the ops port (/healthz, /readyz, /metrics; DKTSCORE_HTTP_ADDR) of every
# subcommand. 8500 and 8501: `model-server`'s gRPC and REST APIs, TF Serving's ports.
EXPOSE 8080 8500 8501
USER 10001:10001
# The ops port's /healthz. model-server also answers the gRPC health service
# (grpc.health.v1) on --port and GET /v1/models/NAME on --rest_api_port.
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
  CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/healthz"]
# The subcommand is the CMD, so `docker run IMAGE` runs `serve` and
# `docker run IMAGE model-server --port=8500 --rest_api_port=8501 ...` runs the
# TF Serving replacement. Exec form: SIGTERM reaches dktscore, not a shell.
ENTRYPOINT ["/usr/local/bin/dktscore"]
CMD ["serve"]
