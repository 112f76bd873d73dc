"""The typed input and output of every step: one model per side, checked where a step is called and where it runs.

Airflow hands these between tasks as XCom and as a pod's argument, so each must stay small: a descriptor
names store keys and counts, never host paths or long lists (those go to the shared store). The size cap is
checked on every validation, at both ends.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from genai_pipeline.bounds import BatchSize, Distance, Epochs, LearningRateMultiplier, SourcesPerPost
from genai_pipeline.config import check_sources
from genai_pipeline.steps.decisions import ChampionDecision
from genai_pipeline.steps.finetune_store import DATASET_KEY_PATTERN

# A descriptor travels as XCom and on a pod's command line; anything bigger belongs in the store.
MAX_DESCRIPTOR_BYTES = 16_384


def run_conf(value: Any) -> Any:
    """A run's conf as the DAG renders it (``tojson`` text), as a dict; an Asset-triggered or scheduled run has none."""
    if isinstance(value, str):
        value = json.loads(value) if value.strip() else None
    return value or {}


class Descriptor(BaseModel):
    """Base of every step input and output: unknown keys are errors, and the JSON form has a size cap."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="after")
    def _small_enough(self) -> Descriptor:
        size = len(self.model_dump_json())
        if size > MAX_DESCRIPTOR_BYTES:
            raise ValueError(
                f"{type(self).__name__} is {size:,} bytes as JSON, over the {MAX_DESCRIPTOR_BYTES:,}-byte cap "
                "for a step descriptor: put bulk data in the store and pass its key"
            )
        return self


class DatasetRef(Descriptor):
    """One OpenLineage dataset a step read or wrote, named by the OpenLineage naming spec."""

    namespace: str = Field(min_length=1)
    name: str = Field(min_length=1)


class Lineage(Descriptor):
    """What a step read and wrote; the DAG-side extractor turns it into the task's OpenLineage event."""

    inputs: list[DatasetRef] = Field(default_factory=list)
    outputs: list[DatasetRef] = Field(default_factory=list)


class Empty(Descriptor):
    """A step that needs nothing but the settings."""


class SchemaResult(Descriptor):
    """Whether ``create_schema`` made the collection or found it."""

    collection: str
    created: bool


class RunOptions(Descriptor):
    """What one run may do besides the defaults: the DAG run's conf (``pipeline ingest`` sets it)."""

    # Sources of this run (name -> folder or fsspec URL) instead of PIPELINE_INGEST__SOURCES.
    sources: dict[str, str] | None = None
    # Plan only: counts, rejections and removals, with nothing written to Weaviate.
    dry_run: bool = False
    # Lift the guard that refuses to prune more than ingest.max_prune_share of a source in one run.
    allow_mass_prune: bool = False
    # Prune documents of sources that are no longer configured (kept by default).
    prune_removed_sources: bool = False

    @field_validator("sources")
    @classmethod
    def _source_names_are_safe(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return None if value is None else check_sources(value)


class RunRequest(Descriptor):
    """Input of the run-wide steps (plan, prune, report): the run and its options."""

    run_id: str = Field(min_length=1)
    options: RunOptions = RunOptions()

    _conf_from_template = field_validator("options", mode="before")(run_conf)


class BatchTask(Descriptor):
    """One batch of the plan: chunk, embed and load each take it (or what the step before returned)."""

    run_key: str
    batch: int = Field(ge=0)
    docs: int = Field(ge=1)
    bytes: int = Field(ge=0)
    label: str


class Chunked(BatchTask):
    """A batch chunked: its chunks are in the store; documents refused at read time are counted here."""

    chunks: int = Field(ge=0)
    late_rejected: int = Field(0, ge=0)
    chunk_seconds: float = Field(0.0, ge=0)
    lineage: Lineage = Lineage()


class Embedded(Chunked):
    """A batch embedded; the call count proves unchanged documents cost no model time."""

    embed_calls: int = Field(ge=0)
    embed_seconds: float = Field(ge=0)


class Loaded(Embedded):
    """A batch written to Weaviate."""

    written: int = Field(ge=0)
    stale_deleted: int = Field(ge=0)
    load_seconds: float = Field(0.0, ge=0)


class Cleaned(Descriptor):
    """What the run's teardown removed of its temporary store files (``ingest/<run_key>/``)."""

    run_key: str
    removed_files: int = Field(ge=0)


class Pruned(Descriptor):
    """What ``prune`` deleted, or why it deleted nothing."""

    removed_documents: int = Field(0, ge=0)
    removed_chunks: int = Field(0, ge=0)
    skipped: str | None = None
    prune_seconds: float = Field(0.0, ge=0)


class RunReport(BaseModel):
    """An ingestion run's report as stored (``reports/ingest/<run_key>.json``): every list whole."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_key: str
    collection: str
    model: str
    dry_run: bool
    documents: int
    ingested: int
    to_ingest: int
    skipped_unchanged: int
    rejected: list[dict[str, str]]
    decoded: list[dict[str, str]]
    symlinks_skipped: int
    hidden_skipped: list[str]
    # Files with more than one hard link, ingested (refused instead with ingest.refuse_hard_links).
    hard_links: list[str] = []
    unavailable_sources: list[dict[str, Any]]
    unconfigured_sources: dict[str, int]
    stale: list[str]
    removed: list[str]
    prune_refused: list[dict[str, Any]]
    prune_skipped: str | None
    removed_documents: int
    removed_chunks: int
    batches: int
    failed_batches: list[int]
    chunks: int
    stale_chunks_deleted: int
    embed_calls: int
    embed_seconds: float
    step_seconds: dict[str, float]
    longest_batch_seconds: float
    mean_batch_seconds: float
    seconds: float
    docs_per_s: float
    chunks_per_s: float


class Summary(RunReport, Descriptor):
    """An ingestion run's report as XCom: counts, and each list cut to its first entries.

    ``totals`` gives every list's full length; the stored report (:class:`RunReport`) has them whole.
    """

    totals: dict[str, int]


# -- fine-tuning ---------------------------------------------------------------------------------------------


class GroupTask(Descriptor):
    """One group folder of example posts (``train/short``) for the formatting step."""

    run_key: str
    split: str = Field(pattern="^(train|validation)$")
    group: str = Field(min_length=1)
    label: str


class Formatted(GroupTask):
    """A group formatted to chat JSONL in the store; files it could not use are listed in its manifest."""

    examples: int = Field(ge=0)
    rejected: int = Field(ge=0)
    lineage: Lineage = Lineage()


class FormatSummary(Descriptor):
    """Examples per split after formatting, and how many files were refused."""

    run_key: str
    examples: dict[str, int]
    groups: list[str]
    rejected: list[dict[str, str]]


class GateRequest(Descriptor):
    """The cost gate's Params: rendered as text by the DAG, coerced here."""

    run_id: str = Field(min_length=1)
    price_per_million_tokens: float = Field(ge=0)
    n_epochs: Epochs
    budget_usd: float = Field(ge=0)


class Evaluation(Descriptor):
    """What the gate measured: valid examples, billing tokens and the estimate against the budget."""

    run_key: str
    run_id: str
    train_examples: int = Field(ge=1)
    validation_examples: int = Field(ge=1)
    invalid: list[dict[str, Any]]
    invalid_total: int = Field(ge=0)
    billing_tokens: int = Field(ge=0)
    n_epochs: int = Field(ge=1)
    price_per_million_tokens: float = Field(ge=0)
    estimated_usd: float = Field(ge=0)
    budget_usd: float = Field(ge=0)
    within_budget: bool
    lineage: Lineage = Lineage()


class Dataset(Descriptor):
    """The combined train and validation files, content-addressed in the store."""

    dataset: str
    train_sha256: str
    validation_sha256: str
    train_examples: int = Field(ge=1)
    validation_examples: int = Field(ge=1)
    lineage: Lineage = Lineage()


class SubmitRequest(Descriptor):
    """The fine-tune DAG's Params; ``dataset`` pins a stored dataset instead of the latest one."""

    run_id: str = Field(min_length=1)
    base_model: str = Field(min_length=1)
    suffix: str = ""
    n_epochs: Epochs
    batch_size: BatchSize
    learning_rate_multiplier: LearningRateMultiplier
    dataset: str = Field("", pattern=DATASET_KEY_PATTERN)


class Submitted(Descriptor):
    """The job a submission created, or found already made for the same files, model and hyperparameters."""

    run_id: str
    job_id: str
    key: str
    dataset: str
    base_model: str
    hyperparameters: dict[str, float | int]
    reused: bool
    lineage: Lineage = Lineage()


class Challenger(Descriptor):
    """A fine-tuned model with its metrics, plot and lineage manifest in the store."""

    model: str
    job_id: str
    dataset: str
    metrics_key: str
    plot_key: str
    lineage_key: str
    final_train_loss: float | None
    final_valid_loss: float | None
    lineage: Lineage = Lineage()


class ScoreRequest(Descriptor):
    """Input of scoring: the run, and optionally the challenger model to score (else the latest one)."""

    run_id: str = Field(min_length=1)
    options: dict[str, Any] = Field(default_factory=dict)

    _conf_from_template = field_validator("options", mode="before")(run_conf)


class ModelScores(Descriptor):
    """One model's scores on the held-out set: the same metrics for champion and challenger.

    ``score`` is the weighted mean of fact coverage, citation share and groundedness (``FineTuneSettings``'s
    ``score_weights``); answer token F1 only breaks a tie.
    """

    model: str
    fact_coverage: float = Field(ge=0, le=1)
    citation_share: float = Field(ge=0, le=1)
    groundedness: float = Field(ge=0, le=1)
    score: float = Field(ge=0, le=1)
    answer_token_f1: float = Field(ge=0, le=1)
    items: int = Field(ge=1)


class Scored(Descriptor):
    """Both models scored on one held-out set, and the decision."""

    run_id: str
    heldout_sha256: str
    challenger: Challenger
    challenger_scores: ModelScores
    champion: str | None
    champion_scores: ModelScores | None
    # The weights the scores were combined with, as configured for this run.
    score_weights: dict[str, float]
    decision: ChampionDecision
    reason: str


class Decision(Descriptor):
    """What the champion/challenger run did: promoted (the champion record's key) or kept the champion."""

    decision: ChampionDecision
    champion: str
    record_key: str
    lineage: Lineage = Lineage()


# -- generation ----------------------------------------------------------------------------------------------


class TopicsRequest(Descriptor):
    """The generation run's topics (a Param, checked by its schema) and retrieval options, as rendered text."""

    run_id: str = Field(min_length=1)
    topics: list[str]
    k: SourcesPerPost
    threshold: Distance

    @field_validator("topics", mode="before")
    @classmethod
    def _topics_from_template(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value


class TopicTask(Descriptor):
    """One topic to write a post about."""

    run_key: str
    topic: str = Field(min_length=1)
    label: str
    k: SourcesPerPost
    threshold: Distance


class GeneratedPost(Descriptor):
    """A post written to the output folder, with the model, template, sources and usage in its front matter."""

    label: str
    topic: str
    path: str
    model: str
    model_role: str
    template: str
    # The quality gate's verdict (published, needs_review, or unchecked when it is off) and its figures.
    status: Literal["published", "needs_review", "unchecked"]
    quality: dict[str, Any] | None = None
    sources: list[dict[str, Any]]
    usage: dict[str, int]
    seconds: float = Field(ge=0)
    lineage: Lineage = Lineage()


class PostsSummary(Descriptor):
    """What the quality gate made of a run's posts: counts by status, and each post's reasons."""

    published: int = Field(ge=0)
    needs_review: int = Field(ge=0)
    unchecked: int = Field(ge=0)
    posts: list[dict[str, Any]]

    def line(self) -> str:
        """One line for logs and the CLI."""
        total = self.published + self.needs_review + self.unchecked
        line = f"{self.published} of {total} posts passed the quality gate, {self.needs_review} need review"
        return line + (f", {self.unchecked} unchecked (gate off)" if self.unchecked else "")
