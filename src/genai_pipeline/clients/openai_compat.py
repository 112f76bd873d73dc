"""The one factory for OpenAI-compatible clients: hosted API, any ``base_url``, or the local server."""

from __future__ import annotations

from openai import OpenAI

from genai_pipeline.config import Settings

# The client refuses to start without a key; a local server with auth off ignores this one.
LOCAL_PLACEHOLDER_KEY = "local-no-key"


def make_openai_client(settings: Settings) -> OpenAI:
    """Client with the configured retries (exponential backoff, ``Retry-After`` honoured) and timeout."""
    secret = settings.openai.api_key or (settings.model_server.api_key if settings.openai.base_url is None else None)
    return OpenAI(
        base_url=settings.openai_base_url,
        api_key=secret.get_secret_value() if secret else LOCAL_PLACEHOLDER_KEY,
        max_retries=settings.openai.max_retries,
        timeout=settings.openai.timeout_seconds,
    )
