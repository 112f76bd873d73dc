# The two quick-start commands are `make demo` and `make test`; everything else supports them.
SHELL := /bin/bash
UV_VERSION := 0.9.30
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
export PIPELINE_HOME ?= $(CURDIR)/.pipeline
export HF_HUB_OFFLINE := 1
export PATH := $(HOME)/.local/bin:$(PATH)


.PHONY: install demo test test-fast lint up down bench bench-real bench-memory bench-finetune bench-retrieval bench-generate images clean cluster-up cluster-down chart-docs \
	e2e bench-cluster kind-up deploy kind-down

# Byte code is compiled here, for the locked packages and the project: where PYTHONDONTWRITEBYTECODE is set (CI
# machines set it) Python never caches it, and every process compiled every module it imported: 7 s of CPU in
# each 22 s `airflow dags test`, and in every Airflow component and task process (docs/benchmarks.md).
# Once 33 s; after that about a second. A changed file is compiled again on import, so stale caches are harmless.
install:  ## Create .venv from the lock file (Python deps, Airflow, models in packages)
	@command -v uv >/dev/null 2>&1 || test -x $(UV) || python3 -m pip install --quiet --user "uv==$(UV_VERSION)"
	$(UV) sync --frozen --all-extras --group dev --compile-bytecode
	$(UV) run --frozen python -m compileall -q src dags

demo: install  ## Run the whole pipeline on the embedded default (no cluster, no API key)
	$(UV) run pipeline demo

# Two pytest workers, a file each at a time: the integration tests wait on schedulers and servers about half
# their time, so the other worker's file runs meanwhile (docs/benchmarks.md, "The test suite"). pytest-randomly
# shuffles the order and prints its seed: `pytest --randomly-seed=N` repeats one, `-p no:randomly` runs
# in file order. --no-loadscope-reorder keeps that order (xdist would hand out the files with the most tests
# first), with tests/conftest.py's exception: the longest files (the demo's first) start first, longest first.
test: install  ## Unit, DAG, chart and integration tests (starts real Weaviate, Airflow, the model server, a browser)
	$(UV) run ruff check src dags tests bench
	bash scripts/ensure-browser.sh || echo "no headless browser: tests/integration/test_web_page.py will skip"
	$(UV) run pytest -n 2 --dist loadfile --no-loadscope-reorder

test-fast: install  ## The everyday loop, about a minute: ruff, unit, DAG and chart tests (no servers)
	$(UV) run ruff check src dags tests bench
	$(UV) run pytest -n 2 -m "not integration" tests/unit tests/contracts tests/dags tests/charts

lint: install
	$(UV) run ruff check src dags tests bench
	$(UV) run ruff format --check src dags tests bench

up: install  ## Start Weaviate and Airflow in the background (UI on :8080)
	$(UV) run pipeline up

down:
	$(UV) run pipeline down

bench: install  ## Ingestion benchmark on a generated 1,000-document corpus
	$(UV) run python bench/ingest.py --docs 1000

bench-real: install  ## Ingestion on a >=25 MB real-world corpus gathered from this machine's docs (not committed)
	$(UV) run python bench/real_corpus.py $(PIPELINE_HOME)/bench/real-corpus --sample-mb 27
	BENCH_RAW_SAMPLE=5000 BENCH_TIMELINE=1 $(UV) run python bench/ingest.py --corpus $(PIPELINE_HOME)/bench/real-corpus

bench-finetune: install  ## A CPU fine-tune on the shipped examples: job time, steps/s, held-out fact coverage base vs tuned
	$(UV) run python bench/finetune.py

bench-retrieval: install  ## recall@k and MRR on examples/retrieval_eval.jsonl, answer fact coverage base vs champion
	$(UV) run python bench/retrieval.py

bench-generate: install  ## Posts on Django's docs (PyPI, pinned): recall, MRR, groundedness, citations, repetition, facts, s/post; base vs champion, gate off vs on
	$(UV) run python bench/django_docs.py $(PIPELINE_HOME)/bench/django-docs
	$(UV) run python bench/generate.py --corpus $(PIPELINE_HOME)/bench/django-docs --home $(PIPELINE_HOME)

bench-memory: install  ## Peak RSS of each ingestion step on 200 documents of 2 MB
	$(UV) run python bench/memory.py --docs 200

.PHONY: bench-model-server-image
bench-model-server-image: install  ## The model-server image run hardened: size, time to healthy, chat latency, a fine-tune
	bash images/build.sh model-server
	$(UV) run python bench/model_server_image.py

images:  ## Build every image with a local Docker engine (tag: bash images/tag.sh)
	bash images/build.sh

cluster-up:  ## A real single-node Kubernetes 1.34 on this machine (binaries built once from the Go proxy)
	bash scripts/cluster/cluster.sh up

cluster-down:  ## Stop it and remove its state (logs stay in .pipeline/cluster/logs)
	bash scripts/cluster/cluster.sh down

chart-docs: install  ## Regenerate charts/genai-pipeline/README.md and the values schema's pipeline section
	$(UV) run python -m genai_pipeline.chart_schema
	$(UV) run python -m genai_pipeline.local.chart_docs

e2e: install  ## Kubernetes mode end to end: cluster, images, chart, Weaviate, Airflow, tests, teardown
	bash scripts/e2e.sh

bench-cluster: install  ## 1,000 documents on the cluster vs embedded mode (docs/benchmarks.md)
	BENCH=1 BENCH_ARGS="--docs 1000" bash scripts/e2e.sh

kind-up:  ## A kind cluster for the umbrella chart (needs Docker, kind, kubectl; Docker Hub for the node image)
	bash scripts/kind.sh up

deploy:  ## Build and load the images, then helm install the umbrella chart with the official charts on kind
	bash scripts/kind.sh deploy

kind-down:
	bash scripts/kind.sh down

clean: down
	rm -rf $(PIPELINE_HOME)
