"""The one factory for OpenAI-compatible clients: hosted API, any ``base_url``, or the local server."""

from __future__ import annotations

from urllib.parse import urlparse

from openai import OpenAI

from genai_pipeline.config import Settings

# The client refuses to start without a key; a local server with auth off ignores this one.
LOCAL_PLACEHOLDER_KEY = "local-no-key"
# APIs known to refuse requests without a key: fail before the first call, naming the missing secret.
HOSTED_API_HOSTS = {"api.openai.com"}


class MissingSecretError(RuntimeError):
    """A hosted API is configured but its key is not; the message says where the key belongs."""


def make_openai_client(settings: Settings) -> OpenAI:
    """Client with the configured retries (exponential backoff, ``Retry-After`` honoured) and timeout."""
    secret = settings.openai.api_key or (settings.model_server.api_key if settings.openai.base_url is None else None)
    if secret is None and urlparse(settings.openai_base_url).hostname in HOSTED_API_HOSTS:
        raise MissingSecretError(
            f"PIPELINE_OPENAI__API_KEY is not set but {settings.openai_base_url} needs a key: put it in the "
            f"environment, or on a cluster in the Secret {settings.runtime.secret_name!r} (never in values or images)"
        )
    return OpenAI(
        base_url=settings.openai_base_url,
        api_key=secret.get_secret_value() if secret else LOCAL_PLACEHOLDER_KEY,
        max_retries=settings.openai.max_retries,
        timeout=settings.openai.timeout_seconds,
    )
