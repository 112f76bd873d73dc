from __future__ import annotations

import threading
from pathlib import Path

from genai_pipeline.store import Store


def test_two_writers_of_one_key_never_collide(tmp_path: Path) -> None:
    """A zombie task and its retry may write the same key at once: each needs a temp file of its own."""
    store = Store(str(tmp_path))
    errors: list[BaseException] = []

    def write(value: int) -> None:
        try:
            for _ in range(200):
                store.write_json("ingest/run/results/00000.json", {"writer": value})
        except BaseException as error:  # collected, and asserted below
            errors.append(error)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.read_json("ingest/run/results/00000.json")["writer"] in (0, 1)
    assert store.keys("ingest/run/results") == ["00000.json"]  # no temp file is listed or left
