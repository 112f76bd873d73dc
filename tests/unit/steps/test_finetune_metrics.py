from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image

from genai_pipeline.steps.finetune_metrics import DPI, FIGSIZE, parse_results, plot, summarize

# What model_server/jobs.py::_results_csv writes: validation only on some steps.
LOCAL = (
    b"step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy\r\n"
    b"1,2.5,0.40,2.6,0.38\r\n"
    b"2,1.8,0.55,,\r\n"
    b"3,1.2,0.66,1.4,0.61\r\n"
    b"4,1.3,0.70,,\r\n"
)

# Hosted OpenAI style: extra full_valid_* columns, blanks as empty strings, rows out of order, no final validation.
HOSTED = (
    b"step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy,full_valid_loss,"
    b"full_valid_mean_token_accuracy\n"
    b"2,1.9,0.5,,,,\n"
    b"1,2.31234567,0.4,2.4,0.41,,\n"
    b"3,1.5,0.6,1.7,0.58,1.65,0.59\n"
    b"4,1.1,0.7,1.5,0.66,,\n"
    b"5,1.0,0.72,,,,\n"
)


def test_parses_the_local_format() -> None:
    rows = parse_results(LOCAL)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert rows[0] == {
        "step": 1.0,
        "train_loss": 2.5,
        "train_accuracy": 0.4,
        "valid_loss": 2.6,
        "valid_mean_token_accuracy": 0.38,
    }
    assert rows[1]["valid_loss"] is None and rows[1]["valid_mean_token_accuracy"] is None


def test_parses_hosted_csv_with_extra_columns_blanks_and_unsorted_steps() -> None:
    rows = parse_results(HOSTED)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    assert rows[2]["full_valid_loss"] == 1.65
    assert rows[0]["full_valid_loss"] is None
    assert rows[1]["valid_loss"] is None


def test_parses_base64_encoded_file_as_hosted_openai_serves_it() -> None:
    assert parse_results(base64.b64encode(HOSTED)) == parse_results(HOSTED)


def test_unknown_non_numeric_column_is_none_and_nan_is_missing() -> None:
    rows = parse_results(b"step,train_loss,note,valid_loss\n1,2.0,hello,nan\n")
    assert rows == [{"step": 1.0, "train_loss": 2.0, "note": None, "valid_loss": None}]


def test_summary_of_local_file() -> None:
    summary = summarize(parse_results(LOCAL))
    assert summary == {
        "steps": 4,
        "first_train_loss": 2.5,
        "final_train_loss": 1.3,
        "min_train_loss": 1.2,
        "final_train_accuracy": 0.7,
        "final_valid_loss": 1.4,
        "final_valid_mean_token_accuracy": 0.61,
        "valid_points": 2,
    }
    json.dumps(summary)


def test_summary_prefers_full_valid_and_rounds() -> None:
    summary = summarize(parse_results(HOSTED))
    assert summary["steps"] == 5
    assert summary["first_train_loss"] == 2.3123
    assert summary["final_train_loss"] == 1.0
    assert summary["min_train_loss"] == 1.0
    assert summary["final_train_accuracy"] == 0.72
    # full_valid_* present on step 3 only: that wins over the later per-batch valid values.
    assert summary["final_valid_loss"] == 1.65
    assert summary["final_valid_mean_token_accuracy"] == 0.59
    assert summary["valid_points"] == 1


def test_final_valid_is_last_non_empty_without_full_columns() -> None:
    data = HOSTED.replace(b"1.65,0.59", b",")
    summary = summarize(parse_results(data))
    assert summary["final_valid_loss"] == 1.5
    assert summary["final_valid_mean_token_accuracy"] == 0.66
    assert summary["valid_points"] == 3


def test_summary_without_validation() -> None:
    summary = summarize(parse_results(b"step,train_loss,train_accuracy\n1,2.0,0.5\n2,1.0,0.6\n"))
    assert summary["final_valid_loss"] is None
    assert summary["final_valid_mean_token_accuracy"] is None
    assert summary["valid_points"] == 0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"epoch,loss\n1,2.0\n", "no step, train_loss column"),
        (b"step,accuracy\n1,0.5\n", "no train_loss column"),
        (b"step,train_loss,train_accuracy\n", "no rows"),
        (b"step,train_loss\n1,abc\n", "line 2: train_loss is not a number: 'abc'"),
        (b"step,train_loss\n1,2.0\n,1.0\n", "line 3: step is empty"),
        (b"<html>Not found</html>", "no step, train_loss column"),
    ],
)
def test_bad_files_raise_with_a_clear_message(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match="fine-tuning result file") as info:
        parse_results(data)
    assert message in str(info.value)


def test_plot_is_a_real_non_blank_png() -> None:
    png = plot(parse_results(HOSTED), "ft:gpt-4o-mini:demo:abc")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) < 100_000
    image = Image.open(io.BytesIO(png))
    image.load()
    assert image.format == "PNG"
    assert image.size == (int(FIGSIZE[0] * DPI), int(FIGSIZE[1] * DPI))
    colours = image.convert("RGB").getcolors(maxcolors=1_000_000)
    assert colours is not None and len(colours) > 20


def test_plot_is_deterministic_and_handles_no_validation() -> None:
    rows = parse_results(LOCAL)
    assert plot(rows, "run") == plot(rows, "run")
    png = plot(parse_results(b"step,train_loss\n1,2.0\n2,1.5\n"), "train only")
    assert Image.open(io.BytesIO(png)).size == (int(FIGSIZE[0] * DPI), int(FIGSIZE[1] * DPI))
