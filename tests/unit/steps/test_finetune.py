"""Submission and results on the in-memory API: one job per dataset and hyperparameters, whatever is retried."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import example_settings, write_tree
from fakes import InMemoryOpenAI, fake_context
from genai_pipeline.steps import finetune_store as layout
from genai_pipeline.steps.contracts import GateRequest, RunRequest, SubmitRequest
from genai_pipeline.steps.examples import format_group, format_report, list_groups
from genai_pipeline.steps.finetune import read_lineage, results, submit
from genai_pipeline.steps.gate import combine, evaluate

POST = "A post\nIts body, in a few words.\n"


@pytest.fixture
def ctx(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A context whose store holds one dataset, made by the real format and gate steps."""
    write_tree(tmp_path / "examples", {"train/g/one.txt": POST, "validation/g/two.txt": POST.replace("A", "B")})
    context = fake_context(example_settings(monkeypatch, tmp_path), openai=InMemoryOpenAI())
    request = RunRequest(run_id="format")
    for group in list_groups(context, request):
        format_group(context, group)
    format_report(context, request)
    gate = GateRequest(run_id="gate", price_per_million_tokens=2.0, n_epochs=1, budget_usd=100.0)
    combine(context, evaluate(context, gate))
    return context


def request(run_id: str = "tune-1", epochs: int = 2) -> SubmitRequest:
    return SubmitRequest(
        run_id=run_id, base_model="SmolLM2-135M-Instruct", n_epochs=epochs, batch_size=1, learning_rate_multiplier=1.0
    )


def test_a_rerun_and_a_lost_response_reuse_the_job_and_the_files(ctx) -> None:
    api = ctx.openai
    first = submit(ctx, request())
    assert not first.reused and len(api.jobs_store) == 1 and len(api.files_store) == 3  # train, validation, results
    assert submit(ctx, request("tune-2")).job_id == first.job_id  # the store's record
    ctx.store.remove(layout.job_record(first.key))  # as if the create's response was lost before the record
    again = submit(ctx, request("tune-3"))
    assert again.reused and again.job_id == first.job_id and len(api.jobs_store) == 1  # found by its metadata
    assert api.jobs_store[first.job_id].metadata["pipeline_key"] == first.key
    other = submit(ctx, request("tune-4", epochs=3))  # other hyperparameters: another job, the same files
    assert other.job_id != first.job_id and other.key != first.key and len(api.jobs_store) == 2


def test_results_make_the_challenger_with_metrics_plot_and_lineage(ctx) -> None:
    submitted = submit(ctx, request())
    challenger = results(ctx, submitted)
    job = ctx.openai.jobs_store[submitted.job_id]
    assert challenger.model == job.fine_tuned_model and challenger.final_train_loss == pytest.approx(2.0 / 3, 1e-3)
    assert ctx.store.read_bytes(challenger.plot_key).startswith(b"\x89PNG")
    assert ctx.store.read_json(layout.LATEST_CHALLENGER)["model"] == challenger.model
    manifest = read_lineage(ctx.store, submitted.job_id)
    assert manifest["model"] == challenger.model and manifest["runs"]["fine_tune"] == "tune-1"
    job.status = "failed"
    with pytest.raises(RuntimeError, match=f"job {job.id} is failed, not succeeded: no model to evaluate"):
        results(ctx, submitted)
