"""The shared store steps use for bulk data; only small descriptors travel through XCom.

A folder here, a shared volume or an S3-compatible bucket on a cluster: anything fsspec opens (the same
URLs Airflow's ``ObjectStoragePath`` accepts).
"""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

import fsspec
import numpy as np


class Store:
    """Read and write JSON, JSON lines and arrays under one root URL."""

    def __init__(self, root: str) -> None:
        self.fs, self.root = fsspec.core.url_to_fs(root)
        self.root = self.root.rstrip("/")

    def path(self, *parts: str) -> str:
        """Absolute store path of a relative key."""
        return "/".join([self.root, *parts])

    def write_bytes(self, key: str, data: bytes) -> str:
        """Write atomically where the filesystem allows it (write then rename) and return the path."""
        path = self.path(key)
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        # A temp name of its own per writer: a zombie task and its retry never write the same temp file.
        tmp = f"{path}.{uuid.uuid4().hex}.partial"
        with self.fs.open(tmp, "wb") as handle:
            handle.write(data)
        self.fs.mv(tmp, path)
        return path

    def read_bytes(self, key: str) -> bytes:
        """Bytes stored under a key."""
        with self.fs.open(self.path(key), "rb") as handle:
            return handle.read()

    def write_json(self, key: str, value: Any) -> str:
        """Store one JSON document."""
        return self.write_bytes(key, json.dumps(value, indent=1, sort_keys=True).encode())

    def read_json(self, key: str) -> Any:
        """Load one JSON document."""
        return json.loads(self.read_bytes(key))

    def write_jsonl(self, key: str, rows: list[dict[str, Any]]) -> str:
        """Store records one JSON object per line."""
        return self.write_bytes(key, "".join(json.dumps(row) + "\n" for row in rows).encode())

    def read_jsonl(self, key: str) -> list[dict[str, Any]]:
        """Load records written by :meth:`write_jsonl`."""
        return [json.loads(line) for line in self.read_bytes(key).decode().splitlines() if line]

    def write_array(self, key: str, array: np.ndarray) -> str:
        """Store a NumPy array (vectors) in ``.npy`` form."""
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        return self.write_bytes(key, buffer.getvalue())

    def read_array(self, key: str) -> np.ndarray:
        """Load an array written by :meth:`write_array`."""
        return np.load(io.BytesIO(self.read_bytes(key)), allow_pickle=False)

    def exists(self, key: str) -> bool:
        """Whether a key holds data."""
        return bool(self.fs.exists(self.path(key)))

    def keys(self, prefix: str) -> list[str]:
        """Keys directly under a prefix, sorted."""
        base = self.path(prefix)
        if not self.fs.exists(base):
            return []
        return sorted(p.rsplit("/", 1)[1] for p in self.fs.ls(base, detail=False) if not p.endswith(".partial"))

    def remove(self, prefix: str) -> None:
        """Delete a key or a whole prefix."""
        path = self.path(prefix)
        if self.fs.exists(path):
            self.fs.rm(path, recursive=True)
