"""Fine-tuning jobs: state on disk, one job training at a time, the rest queued.

Lifecycle: ``validating_files → queued → running → succeeded | failed | cancelled``. Every change is
written to ``<state>/jobs/<id>.json`` before it is visible, so a restarted server finds every job: queued
ones run, one that was running is marked failed with the reason (never silently lost).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import queue
import secrets
import shutil
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from genai_pipeline.config import FineTuneMethod, ModelServerSettings
from genai_pipeline.model_server.errors import APIError, not_found
from genai_pipeline.model_server.files import FileStore
from genai_pipeline.model_server.retention import to_delete
from genai_pipeline.model_server.training import (
    FULL_BYTES_PER_PARAMETER,
    LoraPlan,
    StepMetrics,
    TrainingCancelled,
    TrainingPlan,
    fine_tune,
    full_fine_tune_fits,
    memory_limit,
    parameter_count,
)
from genai_pipeline.steps.chat_jsonl import InvalidTrainingLine, parse_chat_jsonl

log = logging.getLogger(__name__)
TERMINAL = {"succeeded", "failed", "cancelled"}
AUTO_EPOCHS, AUTO_BATCH, AUTO_LR_MULTIPLIER = 3, 1, 1.0
RESULT_COLUMNS = ["step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy"]


class FineTuningService:
    """Creates, runs, lists and cancels jobs against the models the server knows."""

    def __init__(
        self,
        root: Path,
        files: FileStore,
        settings: ModelServerSettings,
        base_models: dict[str, Any],
        champion: Callable[[], str | None] = lambda: None,
    ):
        self.root = root
        self.files = files
        self.settings = settings
        # Base model id -> callable returning its checkpoint folder (converted lazily).
        self.base_models = base_models
        # The model the pipeline serves (None: none yet, or the server cannot read the store); never deleted.
        self.champion = champion
        (root / "jobs").mkdir(parents=True, exist_ok=True)
        (root / "models").mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._queue: queue.Queue[str] = queue.Queue()
        self._cancel: set[str] = set()
        self._recover()
        threading.Thread(target=self._work, name="fine-tuning-worker", daemon=True).start()

    # -- persistence -------------------------------------------------------------------------------------

    def _path(self, job_id: str) -> Path:
        if not job_id.replace("-", "").isalnum():
            raise not_found("fine-tuning job", job_id, param="fine_tuning_job_id")
        return self.root / "jobs" / f"{job_id}.json"

    def _save(self, job: dict[str, Any]) -> None:
        path = self._path(job["id"])
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(job))
        tmp.replace(path)

    def get(self, job_id: str) -> dict[str, Any]:
        """The job object, or 404."""
        path = self._path(job_id)
        if not path.is_file():
            raise not_found("fine-tuning job", job_id, param="fine_tuning_job_id")
        return json.loads(path.read_text())

    def list(self) -> list[dict[str, Any]]:
        """Every job, newest first."""
        jobs = [json.loads(p.read_text()) for p in (self.root / "jobs").glob("ftjob-*.json")]
        return sorted(jobs, key=lambda j: (j["created_at"], j["id"]), reverse=True)

    def _update(self, job_id: str, **changes: Any) -> dict[str, Any]:
        with self._lock:
            job = self.get(job_id)
            job.update(changes)
            self._save(job)
            return job

    def event(self, job_id: str, message: str, *, level: str = "info", kind: str = "message", data: Any = None):
        """Append one event (the API lists them newest first)."""
        record = {
            "object": "fine_tuning.job.event",
            "id": f"ftevent-{secrets.token_hex(12)}",
            "created_at": int(time.time()),
            "level": level,
            "message": message,
            "type": kind,
            "data": data,
        }
        with self._lock, open(self.root / "jobs" / f"{job_id}.events.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")

    def events(self, job_id: str) -> list[dict[str, Any]]:
        """Events of a job, newest first."""
        self.get(job_id)
        path = self.root / "jobs" / f"{job_id}.events.jsonl"
        if not path.is_file():
            return []
        return [json.loads(line) for line in reversed(path.read_text().splitlines()) if line]

    def _recover(self) -> None:
        for job in sorted(self.list(), key=lambda j: j["created_at"]):
            if job["status"] == "running":
                reason = "the model server restarted while this job was training; create a new job to retry"
                self._update(
                    job["id"],
                    status="failed",
                    finished_at=int(time.time()),
                    error={"code": "server_restarted", "message": reason, "param": None},
                )
                self.event(job["id"], f"Job failed: {reason}", level="error")
            elif job["status"] in ("validating_files", "queued"):
                self.event(job["id"], "Model server restarted; job queued again")
                threading.Thread(target=self._validate_and_queue, args=(job["id"],), daemon=True).start()

    # -- API operations ----------------------------------------------------------------------------------

    def create(self, request: dict[str, Any]) -> dict[str, Any]:
        """Check the request, store the job as ``validating_files`` and validate in the background."""
        model = request["model"]
        if model not in self.base_models:
            raise APIError(
                400,
                f"Model {model} is not available for fine-tuning; choose one of {sorted(self.base_models)}.",
                param="model",
                code="model_not_available",
            )
        for param in ("training_file", "validation_file"):
            if request.get(param):
                self.files.get(request[param])
        hyper = _hyperparameters(request, self.settings)
        suffix = request.get("suffix")
        if suffix is not None and (len(suffix) > 64 or not suffix.replace("-", "").replace("_", "").isalnum()):
            raise APIError(400, "suffix may hold up to 64 letters, digits, - and _", param="suffix")
        job = {
            "id": f"ftjob-{secrets.token_hex(12)}",
            "object": "fine_tuning.job",
            "created_at": int(time.time()),
            "error": None,
            "fine_tuned_model": None,
            "finished_at": None,
            "hyperparameters": hyper,
            "method": {"type": "supervised", "supervised": {"hyperparameters": hyper}},
            "model": model,
            "organization_id": "org-local",
            "result_files": [],
            "seed": int(request.get("seed") or 42),
            "status": "validating_files",
            "trained_tokens": None,
            "training_file": request["training_file"],
            "validation_file": request.get("validation_file"),
            "integrations": [],
            "estimated_finish": None,
            "metadata": request.get("metadata"),
            "user_provided_suffix": suffix,
        }
        with self._lock:
            self._check_active_jobs()
            self._save(job)
        self.event(job["id"], f"Created fine-tuning job: {job['id']}")
        threading.Thread(target=self._validate_and_queue, args=(job["id"],), daemon=True).start()
        return job

    def _check_active_jobs(self) -> None:
        """429 when ``max_active_jobs`` jobs have not finished yet.

        429, not 400, as the hosted API answers when an organization has too many active fine-tuning jobs: the
        limit clears by itself when a job finishes, so the client's back-off and retry can succeed.
        """
        active = [job["status"] for job in self.list() if job["status"] not in TERMINAL]
        if len(active) >= self.settings.max_active_jobs:
            running = active.count("running")
            raise APIError(
                429,
                f"This fine-tune request has been rate-limited: the server has reached its maximum of "
                f"{self.settings.max_active_jobs} active fine-tuning jobs ({running} running, "
                f"{len(active) - running} waiting). Retry when one finishes, or cancel one.",
                code="rate_limit_exceeded",
            )

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a job that has not finished; a running one stops before its next step."""
        with self._lock:
            job = self.get(job_id)
            if job["status"] in TERMINAL:
                raise APIError(400, f"Job {job_id} has already {job['status']}", param="fine_tuning_job_id")
            self._cancel.add(job_id)
            if job["status"] != "running":
                job = self._update(job_id, status="cancelled", finished_at=int(time.time()))
                self.event(job_id, "Job cancelled")
        return job

    # -- the worker --------------------------------------------------------------------------------------

    def _validate_and_queue(self, job_id: str) -> None:
        job = self.get(job_id)
        try:
            for param in ("training_file", "validation_file"):
                if job.get(param):
                    parse_chat_jsonl(self.files.content(job[param]))
        except (InvalidTrainingLine, APIError) as error:
            message = f"{param} {job[param]} is invalid: {error}"
            self._update(
                job_id,
                status="failed",
                finished_at=int(time.time()),
                error={"code": "invalid_training_file", "message": message, "param": param},
            )
            self.event(job_id, message, level="error")
            return
        with self._lock:
            if job_id in self._cancel or self.get(job_id)["status"] not in ("validating_files", "queued"):
                return
            self._update(job_id, status="queued")
        self.event(job_id, "Validated training files; job queued")
        self._queue.put(job_id)

    def _work(self) -> None:
        while True:
            job_id = self._queue.get()
            if self.get(job_id)["status"] != "queued":
                continue
            try:
                self._run(job_id)
            except TrainingCancelled:
                self._update(job_id, status="cancelled", finished_at=int(time.time()))
                self.event(job_id, "Job cancelled")
            except Exception as error:  # a failed job must say why, whatever went wrong
                log.exception("fine-tuning job %s failed", job_id)
                self._update(
                    job_id,
                    status="failed",
                    finished_at=int(time.time()),
                    error={"code": "training_failed", "message": str(error), "param": None},
                )
                self.event(job_id, f"Job failed: {error}", level="error", data={"traceback": traceback.format_exc()})

    def _run(self, job_id: str) -> None:
        job = self._update(job_id, status="running")
        self.event(job_id, "Fine-tuning job started")
        train = parse_chat_jsonl(self.files.content(job["training_file"]))
        valid = parse_chat_jsonl(self.files.content(job["validation_file"])) if job["validation_file"] else []
        hyper = job["hyperparameters"]
        base = self.base_models[job["model"]]()
        lora, reason = training_method(self.settings, job["model"], base)
        self.event(job_id, reason)
        base_rate = self.settings.lora_base_learning_rate if lora else self.settings.base_learning_rate
        plan = TrainingPlan(
            n_epochs=hyper["n_epochs"],
            batch_size=hyper["batch_size"],
            learning_rate=base_rate * hyper["learning_rate_multiplier"],
            seed=job["seed"],
            max_steps=self.settings.max_train_steps,
            max_seconds=self.settings.max_train_seconds,
            eval_every=self.settings.eval_every_steps,
            lora=lora,
        )
        rows: list[StepMetrics] = []

        def on_step(metrics: StepMetrics) -> None:
            rows.append(metrics)
            data = {k: v for k, v in vars(metrics).items() if v is not None}
            self.event(
                job_id, f"Step {metrics.step}: training loss={metrics.train_loss:.4f}", kind="metrics", data=data
            )

        output = self.root / "models" / job_id
        result = fine_tune(base, train, valid, plan, output, on_step, lambda: job_id in self._cancel)
        if result.capped:
            self.event(
                job_id,
                f"Training {result.capped}; raise PIPELINE_MODEL_SERVER__MAX_TRAIN_STEPS or "
                "__MAX_TRAIN_SECONDS to train longer",
                level="warn",
            )
        results = self.files.create("step_metrics.csv", "fine-tune-results", _results_csv(rows))
        name = f"ft:{job['model']}:{job['user_provided_suffix'] or 'local'}:{job_id.removeprefix('ftjob-')}"
        self._update(
            job_id,
            status="succeeded",
            finished_at=int(time.time()),
            fine_tuned_model=name,
            trained_tokens=result.trained_tokens,
            result_files=[results["id"]],
        )
        self.event(job_id, f"New fine-tuned model created: {name}")
        self.event(job_id, "The job has successfully completed")
        try:
            self._delete_old_models(keep=name)
        except OSError:  # the job succeeded; a model left on disk is retried after the next one
            log.exception("deleting old fine-tuned models after %s failed", job_id)

    def _delete_old_models(self, keep: str) -> None:
        """Past ``kept_fine_tuned_models``, delete the least recently used models but ``keep`` and the champion."""
        models = self.fine_tuned_models()
        protected = {keep, self.champion()}
        jobs = {job["fine_tuned_model"]: job["id"] for job in self.list() if job["fine_tuned_model"]}
        for name in to_delete(models, self.settings.kept_fine_tuned_models, protected):
            shutil.rmtree(models[name])
            self.event(
                jobs[name],
                f"Deleted fine-tuned model {name}: the server keeps the "
                f"{self.settings.kept_fine_tuned_models} most recently used "
                "(PIPELINE_MODEL_SERVER__KEPT_FINE_TUNED_MODELS) and the champion",
                level="warn",
            )

    def fine_tuned_models(self) -> dict[str, Path]:
        """Model name -> checkpoint of every succeeded job whose model has not been deleted."""
        folders = {
            j["fine_tuned_model"]: self.root / "models" / j["id"] for j in self.list() if j["status"] == "succeeded"
        }
        return {name: folder for name, folder in folders.items() if folder.is_dir()}


def training_method(settings: ModelServerSettings, model: str, checkpoint: Path) -> tuple[LoraPlan | None, str]:
    """LoRA or a full fine-tune of ``model`` as the settings ask (auto: LoRA when a full one would not fit), and why."""
    lora = LoraPlan(settings.lora_rank, settings.lora_alpha, model)
    with_lora = f"Training a LoRA adapter (rank {lora.rank}, alpha {lora.alpha:g})"
    if settings.fine_tune_method is FineTuneMethod.LORA:
        return lora, f"{with_lora}: PIPELINE_MODEL_SERVER__FINE_TUNE_METHOD=lora"
    if settings.fine_tune_method is FineTuneMethod.FULL:
        return None, "Training every weight: PIPELINE_MODEL_SERVER__FINE_TUNE_METHOD=full"
    parameters, limit = parameter_count(checkpoint), memory_limit(settings.train_memory_limit_bytes)
    estimate = (
        f"a full fine-tune of {parameters / 1e6:,.0f} M parameters needs about "
        f"{parameters * FULL_BYTES_PER_PARAMETER / 2**30:.1f} GiB"
    )
    share = f"3/4 of the memory limit ({limit / 2**30:.1f} GiB)"
    if full_fine_tune_fits(parameters, limit):
        return None, f"Training every weight: {estimate}, within {share}"
    return lora, f"{with_lora}: {estimate}, over {share}"


def _hyperparameters(request: dict[str, Any], settings: ModelServerSettings) -> dict[str, Any]:
    """Hyperparameters from ``method.supervised`` (current) or the deprecated top-level field; "auto" resolved.

    Each must be positive and within the server's limit; epochs and batch size whole numbers (400 otherwise).
    """
    method = request.get("method") or {}
    given = dict(request.get("hyperparameters") or {})
    given.update((method.get("supervised") or {}).get("hyperparameters") or {})
    auto = {"n_epochs": AUTO_EPOCHS, "batch_size": AUTO_BATCH, "learning_rate_multiplier": AUTO_LR_MULTIPLIER}
    limits = {
        "n_epochs": settings.max_n_epochs,
        "batch_size": settings.max_batch_size,
        "learning_rate_multiplier": settings.max_learning_rate_multiplier,
    }
    resolved = {}
    for key, default in auto.items():
        value = default if given.get(key, "auto") == "auto" else given[key]
        kind = int if key != "learning_rate_multiplier" else int | float
        if isinstance(value, bool) or not isinstance(value, kind) or not 0 < value <= limits[key]:
            number = "a whole number" if kind is int else "a number"
            raise APIError(
                400,
                f"hyperparameters.{key} must be 'auto' or {number} above 0 and at most {limits[key]:g} "
                f"(PIPELINE_MODEL_SERVER__MAX_{key.upper()}); got {value!r}",
                param=key,
                code="invalid_value",
            )
        resolved[key] = value
    return resolved


def _results_csv(rows: list[StepMetrics]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(RESULT_COLUMNS)
    for row in rows:
        writer.writerow(["" if getattr(row, c) is None else getattr(row, c) for c in RESULT_COLUMNS])
    return buffer.getvalue().encode()
