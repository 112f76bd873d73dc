"""Request bodies of the endpoints the pipeline calls, as the official client sends them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Request(BaseModel):
    # Unknown fields (user, logit_bias, ...) are accepted and ignored, as the hosted API does for most.
    model_config = ConfigDict(extra="allow")


class EmbeddingsRequest(_Request):
    """``POST /v1/embeddings``."""

    model: str
    input: str | list[str]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None


class ChatMessage(_Request):
    """One message; content may be text or a list of text parts."""

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        """The message's text, joining text parts."""
        if isinstance(self.content, list):
            return "".join(part.get("text", "") for part in self.content if part.get("type") == "text")
        return self.content or ""


class ChatRequest(_Request):
    """``POST /v1/chat/completions`` (no streaming, one choice)."""

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    # OpenAI's semantics: each token's logit is lowered by frequency_penalty x (times it was generated so far)
    # plus presence_penalty if it was generated at all.
    frequency_penalty: float = Field(0.0, ge=-2, le=2)
    presence_penalty: float = Field(0.0, ge=-2, le=2)
    seed: int | None = None
    n: int = Field(1, ge=1, le=1)
    stream: bool = False


class FineTuningJobRequest(_Request):
    """``POST /v1/fine_tuning/jobs``; hyperparameters at the top level (deprecated) or under ``method``."""

    model: str
    training_file: str
    validation_file: str | None = None
    hyperparameters: dict[str, Any] | None = None
    method: dict[str, Any] | None = None
    suffix: str | None = None
    seed: int | None = None
    metadata: dict[str, str] | None = None
