# dktscore — every entry point installs what it needs, idempotently.
# Caches live in gitignored folders: .venv (Python + the TensorFlow wheel),
# .tflib (links to the wheel's C library and headers), .cache (downloads).
SHELL := /bin/bash
ROOT := $(CURDIR)
VENV := $(ROOT)/.venv
PY := $(VENV)/bin/python
TF_WHEEL := tensorflow-cpu==2.18.1
TFLIB := $(ROOT)/.tflib
MODEL ?= models/dkt
TEST_SPLIT := data/assistments/builder_test.csv

# graft's cgo says `-ltensorflow` and includes "tensorflow/c/c_api.h"; .tflib
# provides both from the wheel. The rpath makes bin/dktscore and go test
# binaries run without LD_LIBRARY_PATH ($ORIGIN covers a moved checkout).
export CGO_ENABLED := 1
export CGO_CFLAGS := -I$(TFLIB)/include
export CGO_LDFLAGS := -L$(TFLIB) -Wl,-rpath,$(TFLIB) -Wl,-rpath,$$ORIGIN/../.tflib
# TensorFlow's C++ logging is noisy at INFO; keep warnings and errors.
export TF_CPP_MIN_LOG_LEVEL ?= 1

# Integration tests run against the project's own Kafka broker (scripts/kafka-local).
KAFKA_PORT ?= 9092
export DKTSCORE_KAFKA_BROKERS ?= 127.0.0.1:$(KAFKA_PORT)
# The same broker also listens with TLS and SCRAM-SHA-512 on KAFKA_TLS_PORT;
# kafka-local writes the CA, user and password the TLS tests read
# (DKTSCORE_TEST_KAFKA_*) to this file, which test-go sources.
KAFKA_TLS_PORT ?= 9094
KAFKA_TLS_ENV := $(ROOT)/.cache/kafka/run/$(KAFKA_PORT)/tls-scram.env

.PHONY: setup build run test test-go test-py kafka model bench bench-go soak fuzz clean
setup: $(TFLIB)/.ok

$(VENV)/.ok: python/requirements.txt python/requirements-nodeps.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --cache-dir $(ROOT)/.cache/pip --upgrade pip
	$(VENV)/bin/pip install -q --cache-dir $(ROOT)/.cache/pip -r python/requirements.txt
	$(VENV)/bin/pip install -q --cache-dir $(ROOT)/.cache/pip --no-deps -r python/requirements-nodeps.txt
	touch $@

$(TFLIB)/.ok: $(VENV)/.ok
	scripts/link-tensorflow $(VENV) $(TFLIB)
	touch $@

build: setup
	go build -o bin/dktscore ./cmd/dktscore

# The main job: score the bundled ASSISTments test split with the bundled model.
run: build
	bin/dktscore inspect $(MODEL)
	bin/dktscore score --model $(MODEL) --input $(TEST_SPLIT) --output out/builder_test.parquet

test: build kafka test-go test-py

# Starts the local broker if it is not running (fetches the jars once), with a
# PLAINTEXT listener on KAFKA_PORT and a SASL_SSL (SCRAM-SHA-512) one on
# KAFKA_TLS_PORT; it is left running for the next run — `scripts/kafka-local
# stop` stops it. A broker started earlier without the TLS listener must be
# stopped first (kafka-local says so).
kafka:
	KAFKA_PORT=$(KAFKA_PORT) KAFKA_TLS_PORT=$(KAFKA_TLS_PORT) KAFKA_SECURITY=tls-scram scripts/kafka-local start

# deploy/ is its own module (its manifest tests pull compose-go, BuildKit and
# the Kubernetes types, which the binary does not need), so ./... at the root
# skips it; it is vetted and tested from inside.
test-go: setup
	go vet ./...
	if [[ -f $(KAFKA_TLS_ENV) ]]; then set -a; source $(KAFKA_TLS_ENV); set +a; fi; \
	go test -race -count=1 ./...
	cd deploy && go vet ./... && go test -race -count=1 ./...

test-py: setup
	cd python && $(PY) -m pytest -q

model: setup
	cd python && $(PY) -m dkt.train --train ../data/assistments/builder_train.csv \
		--test ../$(TEST_SPLIT) --out ../models/dkt/1

# Every row of BENCHMARKS.md in one run (engine ceiling, score, serve through
# Kafka, Python baselines, naive batching); rewrites BENCHMARKS.md.
bench: build kafka
	$(PY) bench/run.py

# Not part of `make test`: SOAK_MINUTES (default 12) of sequence and event traffic through a broker
# of its own (SOAK_KAFKA_PORT, default 19392), both delivery modes, a kill -9 of every worker each
# minute and one broker restart; prints PASS or FAIL with the counts (bench/soak.py says what is checked).
SOAK_MINUTES ?= 12
soak: build
	SOAK_MINUTES=$(SOAK_MINUTES) $(PY) bench/soak.py

# The Go micro-benchmarks (batching).
bench-go: build
	go test -run '^$$' -bench . -benchtime 3x ./...

# Each decoder's fuzz target for FUZZTIME; crashers land in testdata/fuzz as seeds.
FUZZTIME ?= 30s
fuzz: setup
	for pkg in ./io/records ./state ./modelserver; do \
		for target in $$(go test -list '^Fuzz' $$pkg | grep ^Fuzz); do \
			go test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 1s $$pkg || exit 1; \
		done; \
	done

clean:
	rm -rf bin out
