"""The one factory for OpenAI-compatible clients: hosted API, any ``base_url``, or the local server."""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlparse

from openai import AsyncOpenAI, OpenAI

from genai_pipeline.config import Settings

# The client refuses to start without a key; a local server with auth off ignores this one.
LOCAL_PLACEHOLDER_KEY = "local-no-key"
# Name suffixes of hosts inside a private network or cluster: their servers may run without a key.
PRIVATE_SUFFIXES = (".svc", ".cluster.local", ".internal", ".local", ".localdomain", ".lan")


class MissingSecretError(RuntimeError):
    """A hosted API is configured but its key is not; the message says where the key belongs."""


def is_hosted(base_url: str) -> bool:
    """Whether an API is on the public internet, where every provider refuses requests without a key.

    Loopback, private addresses, single-label names and private suffixes (``*.svc``, ``*.internal``) are
    local servers (the project's own model server, vLLM in the cluster), which may run without one.
    """
    host = (urlparse(base_url).hostname or "").lower().rstrip(".")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "." in host and host != "localhost" and not host.endswith(PRIVATE_SUFFIXES)
    return not (address.is_private or address.is_loopback or address.is_link_local)


def _client_kwargs(settings: Settings) -> dict[str, Any]:
    """Endpoint, key, retries and timeout shared by the sync and async clients.

    The key sent is ``PIPELINE_OPENAI__API_KEY`` alone, whatever server the base URL names: a provider's key, or
    the model server's (the chart hands both the server and its clients the same Secret entry). The server's own
    setting, ``PIPELINE_MODEL_SERVER__API_KEY``, is never read here, so it cannot reach a hosted URL.
    Raises :class:`MissingSecretError` before any request when a hosted API has no key.
    """
    secret = settings.openai.api_key
    if secret is None and is_hosted(settings.openai_base_url):
        raise MissingSecretError(
            f"PIPELINE_OPENAI__API_KEY is not set but {settings.openai_base_url} needs a key: put it in the "
            f"environment, or on a cluster in the Secret {settings.runtime.secret_name!r} (never in values or images)"
        )
    return {
        "base_url": settings.openai_base_url,
        "api_key": secret.get_secret_value() if secret else LOCAL_PLACEHOLDER_KEY,
        "max_retries": settings.openai.max_retries,
        "timeout": settings.openai.timeout_seconds,
    }


def make_openai_client(settings: Settings) -> OpenAI:
    """Client with the configured retries (exponential backoff, ``Retry-After`` honoured) and timeout."""
    return OpenAI(**_client_kwargs(settings))


def make_async_openai_client(settings: Settings) -> AsyncOpenAI:
    """The asyncio twin of :func:`make_openai_client` (same key rules, retries and timeout), e.g. for triggers."""
    return AsyncOpenAI(**_client_kwargs(settings))
