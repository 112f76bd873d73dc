"""Metrics and a plot from a fine-tuning job's result file.

The job's result file is the only record of how training went: per-step train loss and token
accuracy, and validation metrics on the steps where validation ran. Hosted OpenAI and the local
model server (``model_server/jobs.py``) write the same CSV, so one parser serves both. The summary
goes into the run's metrics JSON and the plot is saved next to it, so a reviewer can see at a glance
whether the model learned or overfit without opening the provider's dashboard.

Hosted files may carry extra columns (``full_valid_loss``, ``full_valid_mean_token_accuracy``: the
metrics over the whole validation set, preferred when present), use empty strings for missing
values, and are served base64-encoded; all of that is handled here.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import math
from collections.abc import Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

Row = dict[str, float | None]

REQUIRED = ("step", "train_loss")
# Columns whose values must be numbers; any other (unknown) column is kept only where it parses.
KNOWN = (
    "step",
    "train_loss",
    "train_accuracy",
    "valid_loss",
    "valid_mean_token_accuracy",
    "full_valid_loss",
    "full_valid_mean_token_accuracy",
)
DIGITS = 4
FIGSIZE = (10.0, 4.0)
DPI = 100
# Train as a line; validation (per-batch and, on hosted files, whole-set) as markers joined by a line.
SERIES: tuple[tuple[str, dict[str, object]], ...] = (
    ("train", {"color": "tab:blue"}),
    ("validation", {"color": "tab:orange", "marker": "o", "markersize": 4}),
    ("full validation", {"color": "tab:green", "marker": "s", "markersize": 5}),
)


def parse_results(data: bytes) -> list[Row]:
    """Rows of a result CSV sorted by step; every column a float, blanks (and NaN) as None.

    Raises ``ValueError`` when the file is empty, lacks the ``step``/``train_loss`` columns, has no
    rows, or has a non-numeric value in a known column.
    """
    text = _decode(data)
    reader = csv.DictReader(io.StringIO(text))
    columns = [c.strip() for c in reader.fieldnames or [] if c is not None]
    if not columns:
        raise ValueError("fine-tuning result file is empty")
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise ValueError(
            f"fine-tuning result file has no {', '.join(missing)} column(s); header is {','.join(columns)!r}"
        )
    rows: list[Row] = []
    for raw in reader:
        values = {(k or "").strip(): v for k, v in raw.items() if k is not None}
        if not any((v or "").strip() for v in values.values()):
            continue
        line = reader.line_num
        row: Row = {}
        for column in columns:
            row[column] = _number(values.get(column), column, line, strict=column in KNOWN)
        for column in REQUIRED:
            if row[column] is None:
                raise ValueError(f"fine-tuning result file line {line}: {column} is empty")
        rows.append(row)
    if not rows:
        raise ValueError("fine-tuning result file has a header but no rows")
    rows.sort(key=lambda r: r["step"] or 0.0)
    return rows


def summarize(rows: Sequence[Row]) -> dict[str, float | int | None]:
    """JSON-ready summary: train loss first/final/min, final accuracies, last validation values.

    Validation values are the last non-empty ones, from ``full_valid_*`` when the file has any.
    """
    if not rows:
        raise ValueError("no fine-tuning metrics to summarize")
    train_loss = _series(rows, "train_loss")
    valid_loss_column = _prefer(rows, "full_valid_loss", "valid_loss")
    valid_acc_column = _prefer(rows, "full_valid_mean_token_accuracy", "valid_mean_token_accuracy")
    valid_points = sum(1 for r in rows if r.get(valid_loss_column) is not None or r.get(valid_acc_column) is not None)
    return {
        "steps": int(rows[-1]["step"] or 0),
        "first_train_loss": _round(train_loss[0][1] if train_loss else None),
        "final_train_loss": _round(train_loss[-1][1] if train_loss else None),
        "min_train_loss": _round(min(v for _, v in train_loss) if train_loss else None),
        "final_train_accuracy": _round(_last(rows, "train_accuracy")),
        "final_valid_loss": _round(_last(rows, valid_loss_column)),
        "final_valid_mean_token_accuracy": _round(_last(rows, valid_acc_column)),
        "valid_points": valid_points,
    }


def plot(rows: Sequence[Row], title: str) -> bytes:
    """PNG of loss and token accuracy against step: train as a line, validation as markers, one legend per panel."""
    figure = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    loss_axes, acc_axes = figure.subplots(1, 2)
    panels = (
        (loss_axes, "Loss", "train_loss", "valid_loss", "full_valid_loss"),
        (acc_axes, "Token accuracy", "train_accuracy", "valid_mean_token_accuracy", "full_valid_mean_token_accuracy"),
    )
    for axes, label, *columns in panels:
        drawn = False
        for (series_label, style), column in zip(SERIES, columns, strict=True):
            points = _series(rows, column)
            if points:
                axes.plot(*zip(*points, strict=True), label=series_label, linewidth=1.2, **style)
                drawn = True
        if not drawn:
            axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes)
        else:
            axes.legend()
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_title(label)
        axes.set_xlabel("step")
        axes.set_ylabel(label.lower())
        axes.grid(True, alpha=0.3)
    figure.suptitle(title)
    buffer = io.BytesIO()
    # Fixed metadata keeps the bytes the same for the same input (no matplotlib version/date stamp).
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _decode(data: bytes) -> str:
    """Text of the file; hosted OpenAI serves result files base64-encoded, so undo that when it applies."""
    text = data.decode("utf-8-sig", errors="replace")
    first = text.lstrip().split("\n", 1)[0]
    if first and "," not in first:
        try:
            decoded = base64.b64decode("".join(text.split()), validate=True).decode("utf-8-sig")
        except (binascii.Error, UnicodeDecodeError):
            return text
        if "," in decoded.split("\n", 1)[0]:
            return decoded
    return text


def _number(value: str | None, column: str, line: int, *, strict: bool) -> float | None:
    """Float of one cell; blank or NaN is None, garbage raises in known columns and is None elsewhere."""
    text = (value or "").strip()
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        if strict:
            raise ValueError(f"fine-tuning result file line {line}: {column} is not a number: {text!r}") from None
        return None
    return None if math.isnan(number) else number


def _series(rows: Sequence[Row], column: str) -> list[tuple[float, float]]:
    """(step, value) pairs of a column where the value is present and finite."""
    pairs = []
    for row in rows:
        step, value = row.get("step"), row.get(column)
        if step is not None and value is not None and math.isfinite(value):
            pairs.append((step, value))
    return pairs


def _prefer(rows: Sequence[Row], preferred: str, fallback: str) -> str:
    """``preferred`` when any row has a value in it, else ``fallback``."""
    return preferred if any(r.get(preferred) is not None for r in rows) else fallback


def _last(rows: Sequence[Row], column: str) -> float | None:
    """Last non-empty value of a column."""
    return next((v for r in reversed(rows) if (v := r.get(column)) is not None), None)


def _round(value: float | None) -> float | None:
    """Rounded for the JSON; infinities become None since JSON has no such number."""
    return None if value is None or not math.isfinite(value) else round(value, DIGITS)
