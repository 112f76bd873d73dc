"""Step inputs and outputs are typed models, checked where a step is called and where it runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from genai_pipeline.steps.contracts import MAX_DESCRIPTOR_BYTES, BatchTask, RunRequest
from genai_pipeline.steps.registry import spec

BATCH = {"run_key": "r1", "batch": 0, "docs": 3, "bytes": 1200, "label": "batch 1/1"}


def test_the_run_conf_rendered_by_the_dag_becomes_typed_options() -> None:
    request = spec("plan").check_input({"run_id": "manual__1", "options": '{"dry_run": true, "sources": {"kb": "/d"}}'})
    assert request.options.dry_run and request.options.sources == {"kb": "/d"}
    # An Asset-triggered or scheduled run has no conf: the defaults.
    assert not spec("plan").check_input({"run_id": "r", "options": "null"}).options.dry_run


def test_a_typo_in_the_run_conf_is_an_error_naming_it() -> None:
    with pytest.raises(ValidationError, match="dry_rnu"):
        RunRequest.model_validate({"run_id": "r", "options": '{"dry_rnu": true}'})


def test_each_step_refuses_the_wrong_descriptor() -> None:
    # embed takes what chunk returned: a bare batch (no chunk count) is refused before any work.
    with pytest.raises(ValidationError, match="chunks"):
        spec("embed").check_input(BATCH)
    embedded = spec("embed").check_output({**BATCH, "chunks": 9, "embed_calls": 1, "embed_seconds": 0.5})
    assert embedded["embed_calls"] == 1
    with pytest.raises(ValidationError, match="written"):
        spec("load").check_output(embedded)


def test_descriptors_have_a_checked_size_cap() -> None:
    with pytest.raises(ValidationError, match="byte cap for a step descriptor"):
        BatchTask(**{**BATCH, "label": "x" * MAX_DESCRIPTOR_BYTES})


def test_the_plan_output_is_a_list_of_batches() -> None:
    assert spec("plan").check_output([BatchTask(**BATCH)]) == [BATCH]
    with pytest.raises(ValidationError):
        spec("plan").check_output([{**BATCH, "docs": 0}])  # an empty batch is a planning bug


def test_a_run_conf_source_name_is_checked_like_the_settings() -> None:
    with pytest.raises(ValidationError, match="may hold only letters, digits"):
        RunRequest.model_validate({"run_id": "r", "options": '{"sources": {"../etc": "/etc"}}'})


def test_pipeline_ingest_names_sources_after_their_folders(tmp_path) -> None:
    from genai_pipeline.cli.runs import ingest_sources

    (tmp_path / "my docs").mkdir()
    sources = ingest_sources([str(tmp_path / "my docs"), "s3://bucket/handbook/"], ["notes=./notes"])
    assert sources == {
        "notes": str((Path.cwd() / "notes").resolve()),
        "my-docs": str(tmp_path / "my docs"),
        "handbook": "s3://bucket/handbook/",
    }
    with pytest.raises(SystemExit, match="NAME=PATH"):
        ingest_sources([], ["just-a-path"])


def test_every_step_ends_with_one_line_of_its_numbers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from conftest import isolated_settings
    from genai_pipeline.steps.registry import result_summary, run_step

    isolated_settings(monkeypatch, tmp_path)
    with caplog.at_level(logging.INFO, logger="genai_pipeline.steps.registry"):
        run_step("cleanup", {"run_id": "r1"})
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step cleanup done in ")]
    assert line.endswith(": removed_files=0")
    assert result_summary({"written": 3, "late": [1, 2], "ok": True, "model": "m"}) == "written=3, late=2"
    assert result_summary([{}, {}]) == "2 items"


@pytest.mark.parametrize("dataset", ["../../reports/ingest", "/etc/passwd", "0123456789abcdeF", "0123456789abcdef/.."])
def test_the_fine_tune_dataset_param_is_a_dataset_key_never_a_path(dataset: str) -> None:
    """The Param becomes a store path: "../" read any stored file as training data."""
    submit = {"run_id": "r", "base_model": "m", "n_epochs": 1, "batch_size": 1, "learning_rate_multiplier": 1.0}
    assert spec("submit_fine_tune").check_input({**submit, "dataset": "0123456789abcdef"}).dataset
    assert spec("submit_fine_tune").check_input({**submit, "dataset": ""}).dataset == ""
    with pytest.raises(ValidationError, match="dataset"):
        spec("submit_fine_tune").check_input({**submit, "dataset": dataset})
