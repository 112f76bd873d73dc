"""The one Weaviate client factory, and the knowledge-base collection's schema."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import weaviate
from weaviate.classes.config import Configure, DataType, Property, Tokenization
from weaviate.classes.init import AdditionalConfig, Auth, Timeout
from weaviate.exceptions import WeaviateConnectionError, WeaviateGRPCUnavailableError, WeaviateStartUpError

from genai_pipeline.config import WeaviateSettings
from genai_pipeline.steps.load import EXACT_PROPERTIES, FILTERED_PROPERTIES, PROPERTIES

_UNREACHABLE = (WeaviateConnectionError, WeaviateGRPCUnavailableError, WeaviateStartUpError)
# Connecting is retried this many times with doubling waits (a server restarting, a Service not ready yet).
CONNECT_ATTEMPTS, CONNECT_BACKOFF_SECONDS = 4, 1.0


class WeaviateUnavailable(ConnectionError):
    """Weaviate did not answer after every attempt; the message names where it was looked for."""


@contextmanager
def weaviate_client(settings: WeaviateSettings) -> Iterator[weaviate.WeaviateClient]:
    """A connected v4 client, closed on exit (the batcher is not thread-safe: one per task)."""
    client = _connect(settings)
    try:
        yield client
    finally:
        client.close()


def _connect(settings: WeaviateSettings) -> weaviate.WeaviateClient:
    for attempt in range(CONNECT_ATTEMPTS - 1):
        try:
            return _client(settings)
        except _UNREACHABLE:
            time.sleep(CONNECT_BACKOFF_SECONDS * 2**attempt)
    try:
        return _client(settings)
    except _UNREACHABLE as error:
        raise WeaviateUnavailable(
            f"Weaviate at {settings.host}:{settings.http_port} (gRPC {settings.grpc_host or settings.host}:"
            f"{settings.grpc_port}) did not answer after {CONNECT_ATTEMPTS} attempts: is it running? "
            f"(PIPELINE_WEAVIATE__HOST / __HTTP_PORT / __GRPC_PORT) [{type(error).__name__}]"
        ) from error


def _client(settings: WeaviateSettings) -> weaviate.WeaviateClient:
    """One connection attempt."""
    return weaviate.connect_to_custom(
        http_host=settings.host,
        http_port=settings.http_port,
        http_secure=settings.secure,
        grpc_host=settings.grpc_host or settings.host,
        grpc_port=settings.grpc_port,
        grpc_secure=settings.secure,
        auth_credentials=Auth.api_key(settings.api_key.get_secret_value()) if settings.api_key else None,
        additional_config=AdditionalConfig(timeout=Timeout(init=30, query=60, insert=120)),
        # Init checks would also query pypi.org for a newer client: slow per task, impossible offline.
        skip_init_checks=True,
    )


def embedding_description(model_id: str) -> str:
    """What a collection's description records about its vectors."""
    return f"genai-pipeline chunks; embedding={model_id}"


def recorded_embedding(description: str | None) -> str | None:
    """The embedding model a collection's description records, if any."""
    marker = "embedding="
    if not description or marker not in description:
        return None
    return description.split(marker, 1)[1].split(";", 1)[0].strip()


def create_collection(client: weaviate.WeaviateClient, name: str, description: str) -> None:
    """Create the chunk collection: vectors come from the pipeline, identity fields filter exactly.

    The description records the embedding model, so a query never compares vectors of two models.
    """
    client.collections.create(
        name,
        description=description,
        vector_config=Configure.Vectors.self_provided(),
        properties=[
            Property(
                name=field,
                data_type=DataType.INT if kind is int else DataType.TEXT,
                tokenization=Tokenization.FIELD if field in EXACT_PROPERTIES else None,
                index_filterable=True if field in FILTERED_PROPERTIES else None,
            )
            for field, kind in PROPERTIES.items()
        ],
    )
