"""The one settings model of the pipeline.

DAGs, step CLIs, the model server and the Helm chart's values all speak this model: every field is
read from a ``PIPELINE_<SECTION>__<FIELD>`` environment variable (nested with ``__``), so a pod gets
its configuration from env alone and secrets stay in Kubernetes Secrets.
"""

from __future__ import annotations

import json
import os
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from genai_pipeline.bounds import MAX_EPOCHS, BatchSize, Distance, Epochs, LearningRateMultiplier, SourcesPerPost

ENV_PREFIX = "PIPELINE_"
# The sample knowledge base ships inside the package; this URL resolves wherever the package is installed
# (a laptop, or a step image), so settings handed to a pod never carry a host path.
SAMPLE_KNOWLEDGE_BASE = "package://genai_pipeline/sample_kb"
# Example posts and the held-out evaluation set shipped with the package (about the project itself).
SAMPLE_EXAMPLES = "package://genai_pipeline/examples"


PROJECT_NAME = "genai-content-pipeline"


def _default_home() -> Path:
    """The checkout's .pipeline/ when run inside the project (where `make demo` keeps its state), else XDG's."""
    cwd = Path.cwd()
    for folder in (cwd, *cwd.parents):
        project = folder / "pyproject.toml"
        if project.is_file() and f'name = "{PROJECT_NAME}"' in project.read_text(errors="replace"):
            return folder / ".pipeline"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "genai-pipeline"


def _default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "genai-pipeline"


class RunMode(StrEnum):
    """Where steps run: inside the Airflow worker, or as pods from their own images."""

    EMBEDDED = "embedded"
    KUBERNETES = "kubernetes"


class EmbeddingProvider(StrEnum):
    """In-process packaged model, or any OpenAI-compatible ``/v1/embeddings`` endpoint."""

    LOCAL = "local"
    OPENAI = "openai"


class Resources(BaseModel):
    """Kubernetes requests and limits of one step's container."""

    cpu_request: str = "250m"
    memory_request: str = "512Mi"
    cpu_limit: str = "1"
    memory_limit: str = "1Gi"


def _default_resources() -> dict[str, Resources]:
    return {
        "plan": Resources(),
        "chunk": Resources(),
        "embed": Resources(cpu_request="1", memory_request="1Gi", cpu_limit="2", memory_limit="2Gi"),
        "load": Resources(),
        "finetune": Resources(),
        "generate": Resources(),
    }


class RuntimeSettings(BaseModel):
    """How the step-task factory turns a step into an Airflow task."""

    mode: RunMode = RunMode.EMBEDDED
    namespace: str = "genai-pipeline"
    image_registry: str = "genai-pipeline"
    # The tag images/build.sh built (a content hash, `bash images/tag.sh`), or a release's version: never a
    # fixed default, so a rebuilt image always has a new name and a node never runs a stale one.
    image_tag: str | None = None
    # Per-image tags over image_tag: a dev loop (skaffold) tags each image by its own inputs, and a pod must ask
    # for exactly the image that was built.
    image_tags: dict[str, str] = Field(default_factory=dict)
    image_pull_policy: str = "IfNotPresent"
    # Image of the XCom sidecar the provider adds to every step pod (it needs sh, sleep, kill, pgrep);
    # none means the provider's default (alpine from Docker Hub).
    xcom_sidecar_image: str | None = None
    # How Airflow reaches the API server: in-cluster (the Airflow pod's ServiceAccount), else a kubeconfig.
    in_cluster: bool = True
    kube_config_path: str | None = None
    service_account: str = "genai-pipeline-steps"
    # A Kubernetes Secret whose keys are PIPELINE_* variables (API keys); injected with envFrom.
    secret_name: str = "genai-pipeline-secrets"
    run_as_user: int = 10001
    # A ReadWriteMany claim mounted in every step pod (shared store and corpus); none when both are S3 URLs.
    shared_volume_claim: str | None = None
    shared_mount_path: str = "/data"
    active_deadline_seconds: int = 3600
    retries: int = 3
    retry_delay_seconds: float = 10.0
    retry_exponential_backoff: float = 2.0
    max_retry_delay_seconds: float = 300.0
    # Caps concurrent mapped instances per step (and so concurrent Weaviate writers / API callers).
    max_active_tis_per_dag: int = 4
    # Per-step overrides of that cap. The local embedder already uses every core of its machine, so two
    # at once only contend; raise it on a cluster where each embed pod gets its own CPUs.
    concurrency: dict[str, int] = Field(default_factory=lambda: {"embed": 1})
    resources: dict[str, Resources] = Field(default_factory=_default_resources)

    def image_for(self, image: str) -> str:
        """Full reference of a step image, e.g. ``genai-pipeline/embed:3f2a9c0d1b7e``."""
        tag = self.image_tags.get(image) or self.image_tag
        if not tag:
            raise ValueError(_IMAGE_TAG_REQUIRED)
        return f"{self.image_registry}/{image}:{tag}"


_IMAGE_TAG_REQUIRED = (
    "PIPELINE_RUNTIME__IMAGE_TAG must name the tag of the step images in kubernetes mode: the tag "
    "images/build.sh built (`bash images/tag.sh` prints it) or a released version"
)


class WeaviateSettings(BaseModel):
    """Where the knowledge base lives."""

    host: str = "127.0.0.1"
    http_port: int = 8079
    grpc_host: str | None = None
    grpc_port: int = 50050
    secure: bool = False
    api_key: SecretStr | None = None
    collection: str = "KnowledgeBase"
    batch_size: int = Field(200, ge=1, le=10_000)
    concurrent_requests: int = Field(2, ge=1, le=16)
    # Local server binary (embedded default): the version built with `go install`.
    server_version: str = "v1.34.0"

    @field_validator("collection")
    @classmethod
    def _collection_is_class_name(cls, value: str) -> str:
        if not value[:1].isupper() or not value.replace("_", "").isalnum():
            raise ValueError("must start with a capital letter and hold only letters, digits and _")
        return value


class EmbeddingSettings(BaseModel):
    """Which model turns chunks into vectors."""

    provider: EmbeddingProvider = EmbeddingProvider.LOCAL
    # Local: a name the local registry knows; OpenAI: the API model id.
    model: str = "all-MiniLM-L6-v2"
    batch_size: int = Field(64, ge=1, le=2048)
    threads: int = Field(0, ge=0, description="ONNX Runtime intra-op threads; 0 lets it choose")
    local_model_dir: Path | None = None


class ChunkingSettings(BaseModel):
    """Token budget of one chunk, counted with the embedding model's own tokenizer."""

    size_tokens: int = Field(200, ge=16, le=8192)
    overlap_tokens: int = Field(30, ge=0)

    @model_validator(mode="after")
    def _overlap_below_size(self) -> ChunkingSettings:
        if self.overlap_tokens >= self.size_tokens // 2:
            raise ValueError("overlap_tokens must be under half of size_tokens")
        return self


class IngestSettings(BaseModel):
    """The knowledge-base sources and the guards applied to their documents."""

    # Source name -> folder (a path or an fsspec URL). Names become part of every chunk's source URI.
    sources: dict[str, str] = Field(default_factory=lambda: {"pipeline-docs": SAMPLE_KNOWLEDGE_BASE})
    # Folders (paths or fsspec URLs) that a run's own ``sources`` (its conf, `pipeline ingest PATH`) may lie
    # under; empty: the configured sources' roots only. Anyone who may trigger a run may name a source.
    allowed_roots: list[str] = Field(default_factory=list)
    # A batch (one chunk/embed/load task each) closes at this many bytes of documents, which stand for tokens
    # and so for embedding time; a bigger document is split over several batches. batch_docs caps its files.
    batch_bytes: int = Field(2_000_000, ge=1_000)
    batch_docs: int = Field(200, ge=1, le=10_000)
    # Chunks a step holds at once (read, embed, write): a step's memory follows this, not the batch.
    sub_batch_chunks: int = Field(512, ge=1, le=100_000)
    max_document_bytes: int = Field(2_000_000, ge=1)
    fail_on_rejected: bool = False
    # A file with several hard links may be a second name of a file outside the corpus: listed in the report,
    # and refused when this is set.
    refuse_hard_links: bool = False
    # A file loaded before and refused now keeps its previous version (reported as stale) unless this is set.
    delete_rejected: bool = False
    # A run refuses to prune more than this share of a source's documents unless its conf allows it.
    max_prune_share: float = Field(0.5, ge=0, le=1)
    # Runs whose record (plan, batch manifests, results under runs/ingest/) is kept, so their batches can be
    # cleared and re-run; older records are removed by the next plan.
    run_records_kept: int = Field(30, ge=1)
    # Cron of the scheduled run besides the source Assets; empty: Asset-triggered only. The first scheduled
    # run is the next tick after Airflow first sees the DAG, never a past one.
    schedule_cron: str | None = "0 3 * * *"

    @field_validator("schedule_cron")
    @classmethod
    def _empty_cron_means_none(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @field_validator("sources")
    @classmethod
    def _source_names_are_safe(cls, value: dict[str, str]) -> dict[str, str]:
        return check_sources(value)

    @property
    def run_roots(self) -> list[str]:
        """The roots a run's own ``sources`` may lie under: ``allowed_roots``, else the configured sources' roots."""
        return self.allowed_roots or list(self.sources.values())


def check_sources(value: dict[str, str]) -> dict[str, str]:
    """At least one source, each named so it can start a document URI (the settings and a run's conf)."""
    if not value:
        raise ValueError("at least one source is required")
    for name in value:
        if not name or not all(c.isalnum() or c in "-_" for c in name):
            raise ValueError(f"source name {name!r} may hold only letters, digits, - and _")
    return value


class ScoreWeights(BaseModel):
    """Weights of the champion/challenger score's terms (steps/champion.py): the score is their weighted mean."""

    # Share of held-out prompts whose answer states every fact the item names.
    fact_coverage: float = Field(0.5, ge=0)
    # Share of answer sentences with a valid [n] citation naming one of the prompt's sources.
    citations: float = Field(0.25, ge=0)
    # Share of cited sentences that a source they cite supports (the post quality gate's support check).
    groundedness: float = Field(0.25, ge=0)

    @model_validator(mode="after")
    def _not_all_zero(self) -> ScoreWeights:
        if self.fact_coverage + self.citations + self.groundedness <= 0:
            raise ValueError("at least one score weight must be above 0: the score is their weighted mean")
        return self


class FineTuneSettings(BaseModel):
    """Example posts, the cost gate and the fine-tuning job; the gate and job values are a DAG's Param defaults."""

    # Folders of example posts, each with group subfolders (short/, long/): one post per text file, its first
    # line the title. Train and validation must not share files; the held-out set is neither.
    train_examples: str = f"{SAMPLE_EXAMPLES}/train"
    validation_examples: str = f"{SAMPLE_EXAMPLES}/validation"
    heldout: str = f"{SAMPLE_EXAMPLES}/heldout.jsonl"
    system_prompt: str = "You write short, accurate posts about the genai-pipeline project for its users."
    # Hosted: e.g. gpt-4o-mini-2024-07-18 (o200k_base); offline: the local server's packaged chat model.
    base_model: str = "SmolLM2-135M-Instruct"
    token_encoding: str = "o200k_base"
    max_example_tokens: int = Field(4096, ge=16)
    price_per_million_tokens: float = Field(3.0, ge=0)
    n_epochs: Epochs = 3
    batch_size: BatchSize = 1
    learning_rate_multiplier: LearningRateMultiplier = 2.0
    budget_usd: float = Field(5.0, ge=0)
    suffix: str = "genai-pipeline"
    seed: int = 42
    # The deferred wait polls the job this often at first, backing off to max_poll_seconds.
    poll_seconds: float = Field(5.0, gt=0)
    max_poll_seconds: float = Field(60.0, gt=0)
    # Link from the wait task to the job; {job_id} and {base_url} are filled in. Hosted OpenAI:
    # https://platform.openai.com/finetune/{job_id}
    job_url_template: str = "{base_url}/fine_tuning/jobs/{job_id}"
    # Greedy generations when scoring a model on the held-out prompts.
    score_max_tokens: int = Field(96, ge=8, le=2048)
    # How fact coverage, citations and groundedness make the one score champion and challenger are compared on.
    score_weights: ScoreWeights = Field(default_factory=ScoreWeights)


class PostQualitySettings(BaseModel):
    """The quality gate every post passes (steps/post_quality.py); a post that fails is written as needs_review."""

    # Off: posts are written as the model wrote them, all marked needs_review (for measuring the gate).
    enabled: bool = True
    # Cosine similarity of a sentence to the closest sentence of the chunk it cites, with the collection's
    # embedder, at or above which it counts as supported. Calibrated with MiniLM on hand-written pairs and on
    # the demo's own posts (tests/unit/steps/test_post_quality.py): close paraphrases of a chunk scored
    # 0.63-0.99; unrelated sentences about the project 0.10-0.37; fine-tuned SmolLM2's recombinations of source
    # words into claims the source does not make ("the Configuration is hardened with the same secrets") 0.40-0.53.
    support_threshold: float = Field(0.55, ge=0, le=1)
    # Share of a post's kept sentences that must be supported for it to be published.
    min_supported_share: float = Field(0.9, ge=0, le=1)
    min_sentences: int = Field(2, ge=1)
    # A sentence with fewer words of prose (code spans, roles and citations left out) is a fragment, and is cut:
    # a heading, a bare `name`, a list item of one identifier.
    min_sentence_words: int = Field(3, ge=1, le=50)
    max_words: int = Field(400, ge=10)
    # A sentence in which one word n-gram of this length occurs twice is a loop, and is cut.
    loop_ngram: int = Field(4, ge=2, le=10)
    # A sentence sharing this share of its words (Jaccard) with an earlier one repeats it, reworded, and is cut.
    repeat_overlap: float = Field(0.7, gt=0, le=1)


class GenerationSettings(BaseModel):
    """Retrieval and the post: how many sources, how near, which model when no champion exists yet."""

    k: SourcesPerPost = 5
    # Cosine distance (0 = same direction); chunks farther from the topic are not used.
    distance_threshold: Distance = 0.8
    # None: pure vector search; 0..1: hybrid with BM25 (1 = vector only, 0 = keywords only).
    hybrid_alpha: float | None = Field(None, ge=0, le=1)
    fallback_model: str = "SmolLM2-135M-Instruct"
    group: str = "short"
    max_tokens: int = Field(256, ge=16, le=4096)
    temperature: float = Field(0.0, ge=0, le=2)
    # OpenAI's penalties on tokens the post already used (frequency: per use; presence: once). Measured with
    # bench/generate.py on Django's docs (docs/benchmarks.md, "Posts"): SmolLM2-135M at 0 wrote 122 repeated
    # sentences in 12 posts and the gate published 6; at 0.5, 64 and 10 (the most facts); at 1.0, 12 and 9.
    frequency_penalty: float = Field(0.5, ge=-2, le=2)
    presence_penalty: float = Field(0.0, ge=-2, le=2)
    max_topic_chars: int = Field(500, ge=10)
    # Topics of a scheduled or champion-triggered run (the DAG's Param default).
    topics: list[str] = Field(
        default_factory=lambda: ["How the pipeline keeps the knowledge base current", "Running the pipeline offline"]
    )
    # A text file of topics, one per line (a path or an fsspec URL): its Asset triggers generation.
    topics_file: str | None = None
    # Where posts are written (one Markdown file per topic); default: <store>/posts.
    output_uri: str | None = None
    # Regenerate the posts when a new champion is promoted.
    regenerate_on_champion: bool = True
    quality: PostQualitySettings = Field(default_factory=PostQualitySettings)


class NotifySettings(BaseModel):
    """Where failures, late runs and budget stops are reported: a webhook, email through SMTP, or both.

    The webhook gets Slack-compatible JSON (``text`` plus the event's fields); an email has the same line as
    its subject and every field in its body.
    """

    # A secret like the token: Slack-style URLs carry theirs in the path. From env or a Kubernetes Secret only,
    # so never in a pod spec (a failed pod's spec is printed into the task log).
    webhook_url: SecretStr | None = None
    # Sent as ``Authorization: Bearer``; from env or a Kubernetes Secret only.
    webhook_token: SecretStr | None = None
    # Email: sent when a host and at least one recipient are set (PIPELINE_NOTIFY__EMAIL_TO='["ops@example.com"]').
    smtp_host: str | None = None
    smtp_port: int = Field(25, ge=1, le=65535)
    # ``starttls`` upgrades a plain connection (port 587); ``ssl`` is SMTP over TLS from the start (port 465).
    smtp_security: Literal["none", "starttls", "ssl"] = "none"
    smtp_user: str | None = None
    # From env or a Kubernetes Secret only.
    smtp_password: SecretStr | None = None
    # With smtp_security "none" a login would send the password in clear text, so it is refused unless this is
    # set (a relay on a trusted network). TLS certificates are always verified (the system CAs or SSL_CERT_FILE).
    smtp_allow_cleartext_login: bool = False
    email_from: str = "genai-pipeline@localhost"
    email_to: list[str] = Field(default_factory=list)
    timeout_seconds: float = Field(10.0, gt=0)
    # A run still going this many minutes after it was queued is reported as late (Airflow deadline alert);
    # none: no lateness alerts.
    late_after_minutes: float | None = Field(None, gt=0)


class LineageSettings(BaseModel):
    """OpenLineage events of every step task, through Airflow's OpenLineage provider.

    ``transport`` is the provider's transport config as JSON (``{"type": "http", "url": ...}`` for Marquez or any
    backend); none: one JSON file per event under ``events_dir``, which ``pipeline lineage`` reads.
    """

    enabled: bool = True
    namespace: str = Field("genai-pipeline", min_length=1)
    transport: dict[str, Any] | None = None
    # Where file-transport events go and `pipeline lineage` reads them; default: <home>/lineage.
    events_dir: Path | None = None


class OpenAISettings(BaseModel):
    """Any OpenAI-compatible endpoint; with no base_url the project's local model server is used."""

    base_url: str | None = None
    api_key: SecretStr | None = None
    max_retries: int = Field(5, ge=0, le=20)
    timeout_seconds: float = Field(120.0, gt=0)


class FineTuneMethod(StrEnum):
    """How the model server trains: every weight, a LoRA adapter, or whichever fits the memory limit."""

    AUTO = "auto"
    FULL = "full"
    LORA = "lora"


class ModelServerSettings(BaseModel):
    """The local OpenAI-compatible model server (embeddings, chat, files, fine-tuning)."""

    host: str = "127.0.0.1"
    port: int = 8088
    # When set, every request needs ``Authorization: Bearer <key>`` (401 otherwise), like the hosted API.
    api_key: SecretStr | None = None
    # Folder for uploaded files, job state and fine-tuned models; default: <home>/model-server.
    state_dir: Path | None = None
    # The base chat model, served under its folder's or file's name (without .gguf). Default: the packaged
    # SmolLM2-135M-Instruct. chat_model_dir: a transformers checkpoint folder (config.json, weights, tokenizer),
    # e.g. one `pipeline models prepare --chat-out` wrote; chat_model_gguf: a GGUF file, de-quantised once into
    # the cache. At most one of the two.
    chat_model_dir: Path | None = None
    chat_model_gguf: Path | None = None
    # Uploads (POST /v1/files) are streamed to disk and refused (413) as soon as one passes max_file_bytes.
    # max_files and max_stored_bytes bound what all stored files together may hold; an upload past either is
    # refused (400: waiting does not free space, files must be deleted).
    max_file_bytes: int = Field(50_000_000, ge=1)
    max_files: int = Field(1_000, ge=1)
    max_stored_bytes: int = Field(2_000_000_000, ge=1)
    # Fine-tuning jobs not yet finished (validating, queued or running); one more is refused with a 429.
    max_active_jobs: int = Field(4, ge=1)
    # Fine-tuned models kept on disk (a full SmolLM2 checkpoint is 540 MB). When a job succeeds past this count,
    # the least recently used models (trained, or asked for a chat completion) are deleted, never the champion
    # the pipeline recorded in the store. At least 3: the champion is then kept even when the server cannot read
    # the store (see model_server/retention.py).
    kept_fine_tuned_models: int = Field(4, ge=3)
    # A job's hyperparameters may go up to these (400 beyond). A batch's logits alone take batch x tokens x
    # vocabulary x 4 bytes (SmolLM2: 100 MB per 512-token example), so the batch stays small on CPU.
    max_n_epochs: int = Field(MAX_EPOCHS, ge=1)
    max_batch_size: int = Field(8, ge=1)
    max_learning_rate_multiplier: float = Field(10.0, gt=0)
    # Chat completions: max_tokens (or max_completion_tokens) up to max_completion_tokens; the prompt up to
    # max_prompt_tokens and the model's context length, with the completion (400 beyond).
    max_completion_tokens: int = Field(4_096, ge=1)
    max_prompt_tokens: int = Field(4_096, ge=1)
    # Caps that keep a CPU fine-tune to demo/test scale; a job that hits one says so in its events.
    max_train_steps: int = Field(300, ge=1)
    max_train_seconds: float = Field(1800.0, gt=0)
    base_learning_rate: float = Field(5e-5, gt=0)
    eval_every_steps: int = Field(5, ge=1)
    # full trains every weight; lora trains a low-rank adapter and saves only it; auto picks lora when a full
    # fine-tune's estimate (16 bytes per parameter: fp32 weights, gradients, AdamW's two moments) exceeds 3/4 of
    # train_memory_limit_bytes (none: the container's cgroup limit, else the machine's RAM).
    fine_tune_method: FineTuneMethod = FineTuneMethod.AUTO
    train_memory_limit_bytes: int | None = Field(None, ge=1)
    # LoRA: the adapter's rank and scale (alpha / rank multiplies its update), on every linear layer but the
    # output head. An adapter trains far fewer weights, so it takes a higher base rate (times the job's
    # learning_rate_multiplier).
    lora_rank: int = Field(16, ge=1, le=256)
    lora_alpha: float = Field(32.0, gt=0)
    lora_base_learning_rate: float = Field(5e-4, gt=0)
    # Faults on demand: a share of /v1 requests answers 429 (with Retry-After) or 500.
    fault_rate_429: float = Field(0.0, ge=0, le=1)
    fault_rate_500: float = Field(0.0, ge=0, le=1)
    fault_retry_after_seconds: float = Field(0.5, ge=0)
    fault_seed: int | None = None
    # The first N fine-tuning jobs are created and then answered 500, as a response lost on the way back.
    fault_lost_job_responses: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _one_chat_model(self) -> ModelServerSettings:
        if self.chat_model_dir is not None and self.chat_model_gguf is not None:
            raise ValueError("set chat_model_dir or chat_model_gguf, not both: the server has one base chat model")
        return self

    @property
    def base_url(self) -> str:
        """Base URL clients use when no hosted API is configured."""
        return f"http://{self.host}:{self.port}/v1"


class WebPageSettings(BaseModel):
    """What the post-writing web page accepts: the Host names it answers, who may use it, how big a request may be."""

    # Host header names (a port is ignored; "*.example.com" matches subdomains). A page elsewhere that points
    # its own name at 127.0.0.1 (DNS rebinding) is refused. The chart adds its Service's names.
    allowed_hosts: list[str] = Field(default_factory=lambda: ["localhost", "127.0.0.1"], min_length=1)
    # A request body over this many bytes is refused (413) before it is read whole.
    max_request_bytes: int = Field(16_384, ge=1_024, le=10_000_000)
    # When set, every page and API call but /health asks for it (HTTP Basic: the browser prompts; any user
    # name). From env or a Kubernetes Secret only; set it wherever others share the page's network.
    password: SecretStr | None = None


class Settings(BaseSettings):
    """All settings; build with :func:`get_settings` so every caller shares one validated instance."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="ignore", validate_default=True
    )

    home: Path = Field(default_factory=_default_home)
    cache_dir: Path = Field(default_factory=_default_cache)
    # Shared store for bulk data between steps: a folder (on a cluster, on the shared ReadWriteMany claim). The
    # store goes through fsspec, but no image or lock carries an object-store backend (s3fs) yet.
    store_uri: str | None = None
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)
    weaviate: WeaviateSettings = Field(default_factory=WeaviateSettings)
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    chunking: ChunkingSettings = Field(default_factory=ChunkingSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    fine_tune: FineTuneSettings = Field(default_factory=FineTuneSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    lineage: LineageSettings = Field(default_factory=LineageSettings)
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    openai: OpenAISettings = Field(default_factory=OpenAISettings)
    model_server: ModelServerSettings = Field(default_factory=ModelServerSettings)
    web_page: WebPageSettings = Field(default_factory=WebPageSettings)

    @model_validator(mode="after")
    def _pods_share_a_store(self) -> Settings:
        if self.runtime.mode is RunMode.KUBERNETES and not self.store_uri:
            raise ValueError(
                "PIPELINE_STORE_URI must name a store every pod can reach in kubernetes mode: a path on the "
                "shared volume (PIPELINE_RUNTIME__SHARED_VOLUME_CLAIM, mounted at /data)"
            )
        if self.runtime.mode is RunMode.KUBERNETES and not self.runtime.image_tag:
            raise ValueError(_IMAGE_TAG_REQUIRED)
        return self

    @property
    def store(self) -> str:
        """Root of the shared store."""
        return self.store_uri or str(self.home / "store")

    @property
    def lineage_dir(self) -> Path:
        """Where the file transport writes OpenLineage events and ``pipeline lineage`` reads them."""
        return self.lineage.events_dir or self.home / "lineage"

    @property
    def model_server_dir(self) -> Path:
        """Where the model server keeps files, jobs and fine-tuned models."""
        return self.model_server.state_dir or self.home / "model-server"

    @property
    def openai_base_url(self) -> str:
        """The configured API, or the local model server when none is configured."""
        return self.openai.base_url or self.model_server.base_url

    def public_env(self) -> dict[str, str]:
        """Non-secret settings as ``PIPELINE_*`` env vars, to hand to a pod.

        Secrets are left out on purpose: pods get them from a Kubernetes Secret, never from the spec.
        """
        env: dict[str, str] = {}
        data = self.model_dump(mode="json", exclude=_MACHINE_LOCAL)
        for section, value in data.items():
            if isinstance(value, dict):
                for key, item in value.items():
                    if item is None or _is_secret(self, section, key):
                        continue
                    env[f"{ENV_PREFIX}{section.upper()}__{key.upper()}"] = _env_text(item)
            elif value is not None:
                env[f"{ENV_PREFIX}{section.upper()}"] = _env_text(value)
        return env


# Paths that belong to the machine the settings were read on, not to a pod started from them.
_MACHINE_LOCAL = {
    "home": True,
    "cache_dir": True,
    "embedding": {"local_model_dir"},
    "model_server": {"state_dir", "chat_model_dir", "chat_model_gguf"},
    # Only Airflow reads the transport, and an HTTP backend's config may hold its API key.
    "lineage": {"events_dir", "transport"},
}


def _is_secret(settings: Settings, section: str, key: str) -> bool:
    field = type(getattr(settings, section)).model_fields.get(key)
    annotation = str(field.annotation) if field else ""
    return "SecretStr" in annotation


def _env_text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
