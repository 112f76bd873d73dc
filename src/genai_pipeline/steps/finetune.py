"""Fine-tuning on any OpenAI-compatible API: an idempotent submission, then results and lineage.

The submission's key hashes the two files, the base model and the hyperparameters. It is written into the
job's metadata, so a retry or re-run finds the job it (or a lost response) already made and never submits
twice: the store's record is checked first, then the API's job list. The create call itself is never
retried by the client: a response lost after the job was made would otherwise make a second one.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from genai_pipeline.steps import finetune_store as layout
from genai_pipeline.steps import lineage
from genai_pipeline.steps.context import StepContext
from genai_pipeline.steps.contracts import Challenger, SubmitRequest, Submitted
from genai_pipeline.steps.finetune_store import SPLITS, sha256
from genai_pipeline.store import Store

log = logging.getLogger(__name__)
# A job in one of these states is not reused: a new submission replaces it.
DEAD = {"failed", "cancelled"}
# Jobs searched for a key when the store has no record (a response lost between create and record).
SEARCHED_JOBS = 100


def submission_key(train_sha256: str, validation_sha256: str, base_model: str, hyperparameters: dict[str, Any]) -> str:
    """The idempotency key: same files, base model and hyperparameters give the same key."""
    identity = {
        "train": train_sha256,
        "validation": validation_sha256,
        "model": base_model,
        "hyperparameters": hyperparameters,
    }
    return sha256(json.dumps(identity, sort_keys=True).encode())[:32]


def submit(ctx: StepContext, request: SubmitRequest) -> Submitted:
    """Upload the dataset and create the job, unless a live job with the same key exists."""
    settings, store = ctx.settings, ctx.store
    dataset = request.dataset or store.read_json(layout.LATEST_DATASET)["dataset"]
    manifest = store.read_json(layout.dataset(dataset, "manifest.json"))
    hyper: dict[str, float | int] = {
        "n_epochs": request.n_epochs,
        "batch_size": request.batch_size,
        "learning_rate_multiplier": request.learning_rate_multiplier,
    }
    key = submission_key(manifest["train_sha256"], manifest["validation_sha256"], request.base_model, hyper)
    client = ctx.openai
    found = _existing_job(client, store, key)
    if found is not None:
        log.info("job %s (%s) already made for key %s: not submitting again", found.id, found.status, key)
        job_id, reused = found.id, True
    else:
        files = {
            split: _upload(
                client, f"{key[:16]}-{split}.jsonl", store.read_bytes(layout.dataset(dataset, f"{split}.jsonl"))
            )
            for split in SPLITS
        }
        job = client.with_options(max_retries=0).fine_tuning.jobs.create(
            model=request.base_model,
            training_file=files["train"],
            validation_file=files["validation"],
            suffix=request.suffix or None,
            seed=settings.fine_tune.seed,
            method={"type": "supervised", "supervised": {"hyperparameters": hyper}},
            metadata={"pipeline_key": key, "dataset": dataset},
        )
        log.info("submitted %s on %s (dataset %s, key %s)", job.id, request.base_model, dataset, key)
        job_id, reused = job.id, False
    record = {"job_id": job_id, "key": key, "dataset": dataset, "run_id": request.run_id, "at": time.time()}
    store.write_json(layout.job_record(key), record)
    return Submitted(
        run_id=request.run_id,
        job_id=job_id,
        key=key,
        dataset=dataset,
        base_model=request.base_model,
        hyperparameters=hyper,
        reused=reused,
        lineage=lineage.lineage(
            [
                *(lineage.store_file(settings, layout.dataset(dataset, f"{split}.jsonl")) for split in SPLITS),
                lineage.model(settings, request.base_model),
            ],
            [lineage.fine_tune_job(settings, job_id)],
        ),
    )


def _existing_job(client: Any, store: Store, key: str) -> Any:
    """A live job for this key: the store's record first, then the API's recent jobs by metadata."""
    if store.exists(layout.job_record(key)):
        job = client.fine_tuning.jobs.retrieve(store.read_json(layout.job_record(key))["job_id"])
        if job.status not in DEAD:
            return job
    for job in client.fine_tuning.jobs.list(limit=SEARCHED_JOBS).data:
        if (job.metadata or {}).get("pipeline_key") == key and job.status not in DEAD:
            return job
    return None


def _upload(client: Any, filename: str, data: bytes) -> str:
    """A file's id, reusing an uploaded file of the same name and size (a retry does not upload twice)."""
    for existing in client.files.list(purpose="fine-tune"):
        if existing.filename == filename and existing.bytes == len(data):
            return existing.id
    return client.files.create(file=(filename, data), purpose="fine-tune").id


def results(ctx: StepContext, submitted: Submitted) -> Challenger:
    """Metrics JSON, loss plot and lineage manifest of a succeeded job; it becomes the challenger."""
    # matplotlib is imported here, not at module import: submission never draws.
    from genai_pipeline.steps.finetune_metrics import parse_results, plot, summarize

    settings, client = ctx.settings, ctx.openai
    job = client.fine_tuning.jobs.retrieve(submitted.job_id)
    if job.status != "succeeded" or not job.fine_tuned_model:
        raise RuntimeError(f"job {job.id} is {job.status}, not succeeded: no model to evaluate")
    if not job.result_files:
        raise RuntimeError(f"job {job.id} succeeded without a result file: no metrics to report")
    rows = parse_results(client.files.content(job.result_files[0]).read())
    summary = summarize(rows)
    store = ctx.store
    metrics = {"model": job.fine_tuned_model, "job_id": job.id, "trained_tokens": job.trained_tokens, **summary}
    metrics_key = layout.model_file(job.id, "metrics.json")
    store.write_json(metrics_key, metrics)
    plot_key = layout.model_file(job.id, "loss.png")
    store.write_bytes(plot_key, plot(rows, f"{job.fine_tuned_model} ({job.id})"))
    lineage_key = layout.lineage(job.fine_tuned_model)
    # A model's lineage is written once, by the run that made its job; a re-run that found the job keeps it.
    if not store.exists(lineage_key):
        store.write_json(lineage_key, lineage_manifest(store, submitted, job, metrics_key, plot_key))
    challenger = Challenger(
        model=job.fine_tuned_model,
        job_id=job.id,
        dataset=submitted.dataset,
        metrics_key=metrics_key,
        plot_key=plot_key,
        lineage_key=lineage_key,
        final_train_loss=summary["final_train_loss"],
        final_valid_loss=summary["final_valid_loss"],
        lineage=lineage.lineage(
            [lineage.fine_tune_job(settings, job.id)],
            [lineage.model(settings, job.fine_tuned_model), lineage.store_file(settings, metrics_key)],
        ),
    )
    store.write_json(layout.model_file(job.id, "challenger.json"), challenger.model_dump())
    store.write_json(layout.LATEST_CHALLENGER, challenger.model_dump())
    return challenger


def lineage_manifest(store: Store, submitted: Submitted, job: Any, metrics_key: str, plot_key: str) -> dict[str, Any]:
    """Everything that made a model: example files and hashes, datasets, model, hyperparameters, job, runs."""
    dataset = store.read_json(layout.dataset(submitted.dataset, "manifest.json"))
    return {
        "model": job.fine_tuned_model,
        "job_id": job.id,
        "base_model": submitted.base_model,
        "hyperparameters": submitted.hyperparameters,
        "submission_key": submitted.key,
        "trained_tokens": job.trained_tokens,
        "dataset": {
            "key": submitted.dataset,
            "train_sha256": dataset["train_sha256"],
            "validation_sha256": dataset["validation_sha256"],
            "train_examples": dataset["train_examples"],
            "validation_examples": dataset["validation_examples"],
        },
        "examples": dataset["examples"],
        "runs": {**dataset["runs"], "fine_tune": submitted.run_id},
        "metrics": metrics_key,
        "plot": plot_key,
        "created_at": job.finished_at or int(time.time()),
    }


def read_lineage(store: Store, model_or_job: str) -> dict[str, Any]:
    """A model's lineage manifest by model id or job id, or KeyError listing the models there are."""
    if store.exists(layout.lineage(model_or_job)):
        return store.read_json(layout.lineage(model_or_job))
    names = store.keys(layout.LINEAGE_FOLDER)
    for name in names:
        manifest = store.read_json(f"{layout.LINEAGE_FOLDER}/{name}")
        if manifest["job_id"] == model_or_job:
            return manifest
    known = ", ".join(n.removesuffix(".json") for n in names) or "none yet"
    raise KeyError(f"no lineage for {model_or_job!r}; models with lineage: {known}")
