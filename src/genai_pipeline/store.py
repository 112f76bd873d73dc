"""The shared store steps use for bulk data; only small descriptors travel through XCom.

A folder here, a shared volume or an S3-compatible bucket on a cluster: anything fsspec opens (the same
URLs Airflow's ``ObjectStoragePath`` accepts). A bucket's endpoint and credentials come from the environment
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` from a Secret, or workload identity),
never from settings.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

if TYPE_CHECKING:
    import numpy as np


def is_local(url: str) -> bool:
    """Whether a path or fsspec URL names this machine's filesystem (a plain path, ``file://``, ``local://``)."""
    return fsspec.utils.get_protocol(url) in LocalFileSystem.protocol


class Store:
    """Read and write JSON, JSON lines and arrays under one root URL."""

    def __init__(self, root: str) -> None:
        self.local = is_local(root)
        # Other pods write to a bucket too: a listing cached in this process would hide their keys (and give
        # stale sizes to reads), so object stores are listed afresh each time.
        self.fs, self.root = fsspec.core.url_to_fs(root, **({} if self.local else {"use_listings_cache": False}))
        self.root = self.root.rstrip("/")

    def path(self, *parts: str) -> str:
        """Absolute store path of a relative key."""
        return "/".join([self.root, *parts])

    def url(self, key: str) -> str:
        """The key's full URL, protocol included (``file:///…``, ``s3://bucket/…``)."""
        return self.fs.unstrip_protocol(self.path(key))

    @contextmanager
    def writer(self, key: str) -> Iterator[IO[bytes]]:
        """A binary handle whose bytes appear under ``key`` only when the block ends without an error.

        A reader never sees half a value, and a step can stream rows out without holding them all.
        """
        if self.local:
            with self._renamed(self.path(key)) as handle:
                yield handle
        else:
            with self._uploaded(self.path(key)) as handle:
                yield handle

    @contextmanager
    def _renamed(self, path: str) -> Iterator[IO[bytes]]:
        """Written to a temp name, then renamed: atomic on a local or shared filesystem."""
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        # A temp name of its own per writer: a zombie task and its retry never write the same temp file.
        tmp = f"{path}.{uuid.uuid4().hex}.partial"
        try:
            with self.fs.open(tmp, "wb") as handle:
                yield handle
        except BaseException:
            self.fs.rm(tmp)
            raise
        self.fs.mv(tmp, path)

    @contextmanager
    def _uploaded(self, path: str) -> Iterator[IO[bytes]]:
        """Written straight to the key: an object appears whole when its upload completes, at close.

        A move on an object store is a copy and a delete (not atomic, and twice the traffic), so there is no
        temp key. A small value goes in one PUT, a large one as a multipart upload. Concurrent writers of a key
        each upload a whole value; the last to complete wins. A read racing an overwrite gets the old value, the
        new one, or (s3fs checks the ETag between requests) ``FileExpired``, never a mix.
        """
        handle = self.fs.open(path, "wb")
        try:
            yield handle
        except BaseException:
            # Abort the multipart upload if one began and drop the buffer; marked closed, neither this block
            # nor the garbage collector's close() publishes the bytes written so far.
            handle.discard()
            handle.closed = True
            raise
        handle.close()

    def write_bytes(self, key: str, data: bytes) -> str:
        """Write one value atomically and return its path."""
        with self.writer(key) as handle:
            handle.write(data)
        return self.path(key)

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

    def write_jsonl(self, key: str, rows: Iterable[dict[str, Any]]) -> int:
        """Stream records out one JSON object per line; returns how many were written."""
        count = 0
        with self.writer(key) as handle:
            for row in rows:
                handle.write(json.dumps(row).encode() + b"\n")
                count += 1
        return count

    def iter_jsonl(self, key: str) -> Iterator[dict[str, Any]]:
        """Records written by :meth:`write_jsonl`, read one line at a time."""
        with self.fs.open(self.path(key), "rb") as handle:
            for line in handle:
                if line.strip():
                    yield json.loads(line)

    def write_array(self, key: str, array: np.ndarray) -> str:
        """Store a NumPy array (vectors) in ``.npy`` form."""
        import numpy as np  # only the images whose steps handle vectors carry NumPy

        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        return self.write_bytes(key, buffer.getvalue())

    def read_array(self, key: str) -> np.ndarray:
        """Load an array written by :meth:`write_array`."""
        import numpy as np

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

    def count(self, prefix: str) -> int:
        """Files anywhere under a prefix (0 when it does not exist)."""
        base = self.path(prefix)
        return len(self.fs.find(base)) if self.fs.exists(base) else 0

    def remove(self, prefix: str) -> None:
        """Delete a key or a whole prefix."""
        path = self.path(prefix)
        if self.fs.exists(path):
            self.fs.rm(path, recursive=True)
