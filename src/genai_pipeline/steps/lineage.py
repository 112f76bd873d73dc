"""The datasets a step reads and writes, named the OpenLineage way, for the ``lineage`` of its result.

Steps run in pods that Airflow only sees through their result, so each step names its own inputs and
outputs here and the DAG-side extractor (``orchestration.lineage``) turns them into the task's event.
Names follow the OpenLineage naming spec: a file is ``file`` + its absolute path, an object store is
``s3://bucket`` + its key, anything else ``scheme://host`` + its path. The names are the configured
locations (a source's root, the store's URL), which are the same strings in every pod and worker.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

import fsspec

from genai_pipeline.config import Settings
from genai_pipeline.steps.contracts import MAX_DESCRIPTOR_BYTES, DatasetRef, Lineage
from genai_pipeline.store import Store

# Object stores whose bucket is the namespace (the rest of the URL is the name).
BUCKET_SCHEMES = frozenset({"s3", "s3a", "gs", "gcs", "abfs", "abfss", "wasbs", "az"})
# A step's result must stay a small descriptor: its dataset list may take this share of the cap. Past it,
# the folders the items live in stand for them (a batch of many small documents names its source folders).
LIST_BUDGET_BYTES = MAX_DESCRIPTOR_BYTES // 3


def location(url: str) -> DatasetRef:
    """The dataset at a local path or an fsspec URL."""
    if "://" not in url:
        return DatasetRef(namespace="file", name=fsspec.core.url_to_fs(url)[1])
    parts = urlsplit(url)
    if parts.scheme in ("file", "local"):
        return DatasetRef(namespace="file", name=parts.path)
    # user:token@ is a credential, not part of the dataset's name; a query (a signed URL's) is left out too.
    namespace = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
    if parts.scheme in BUCKET_SCHEMES:
        return DatasetRef(namespace=namespace, name=parts.path.lstrip("/"))
    return DatasetRef(namespace=namespace, name=parts.path or "/")


def store_file(settings: Settings, key: str) -> DatasetRef:
    """A file (or folder) of the shared store."""
    return location(Store(settings.store).url(key))


def document(roots: Mapping[str, str], uri: str) -> DatasetRef:
    """A knowledge-base document by its ``<source>/<relpath>`` URI, at its source's configured location.

    The root is the configured string, not resolved (``package://`` stays), so pods and workers name a
    document alike. A source that is not among ``roots`` keeps a logical name (``kb-source://<source>``), so a
    post whose document came from a run's own sources still names it.
    """
    source, _, relpath = uri.partition("/")
    if source in roots:
        return location(f"{roots[source].rstrip('/')}/{relpath}")
    return DatasetRef(namespace=f"kb-source://{source}", name=relpath)


def collection(settings: Settings) -> DatasetRef:
    """The Weaviate collection of the knowledge base."""
    weaviate = settings.weaviate
    return DatasetRef(namespace=f"weaviate://{weaviate.host}:{weaviate.http_port}", name=weaviate.collection)


def api_namespace(settings: Settings) -> str:
    """The OpenAI-compatible API's namespace: its base URL without a trailing slash."""
    return settings.openai_base_url.rstrip("/")


def model(settings: Settings, model_id: str) -> DatasetRef:
    """A model served by the OpenAI-compatible API (base or fine-tuned)."""
    return DatasetRef(namespace=api_namespace(settings), name=f"models/{model_id}")


def fine_tune_job(settings: Settings, job_id: str) -> DatasetRef:
    """A fine-tuning job of the API: what it trained on is its input, the model its output."""
    return DatasetRef(namespace=api_namespace(settings), name=f"fine_tuning/jobs/{job_id}")


def bounded(items: Iterable[DatasetRef], folders: Iterable[DatasetRef]) -> list[DatasetRef]:
    """``items``, or ``folders`` when listing every item would not fit a step descriptor."""
    listed, size = [], 0
    for item in dict.fromkeys(items):
        size += len(item.model_dump_json())
        if size > LIST_BUDGET_BYTES:
            return list(dict.fromkeys(folders))
        listed.append(item)
    return listed


def lineage(inputs: Iterable[DatasetRef] = (), outputs: Iterable[DatasetRef] = ()) -> Lineage:
    """A step's lineage, each dataset once, in order."""
    return Lineage(inputs=list(dict.fromkeys(inputs)), outputs=list(dict.fromkeys(outputs)))
