"""Model-server abuse benchmark: a 200 MB upload against the real server, and what it costs the server's memory.

    uv run python bench/model_server_abuse.py

Starts `pipeline serve-models` (default settings: 50 MB file cap), then sends 200 MB three ways: with the
official client (Content-Length declared), as a chunked body that declares no length, and a chunked body whose
file part stops just under the cap. Prints each answer and the server process's resident memory (VmRSS) and
peak (VmHWM, from /proc/<pid>/status) before and after, against the chart's model-server memory limit.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from processes import status_bytes

MB = 1_000_000
UPLOAD_BYTES = 200 * MB
CHUNK = MB
BOUNDARY = "bench-boundary"
VALUES = Path(__file__).resolve().parents[1] / "charts" / "genai-pipeline" / "values.yaml"
UNITS = {"Mi": 2**20, "Gi": 2**30}


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in MB."""
    return {key: status_bytes(pid, key) // MB for key in ("VmRSS", "VmHWM")}


def chart_limit() -> str:
    """The model server's memory limit in the chart's values (e.g. ``6Gi``)."""
    import yaml

    return yaml.safe_load(VALUES.read_text())["modelServer"]["resources"]["limits"]["memory"]


def chunked_form(size: int) -> Iterator[bytes]:
    """A multipart body with a ``size``-byte file, yielded a MB at a time (httpx sends it chunked, no length)."""
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nuser_data\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    for offset in range(0, size, CHUNK):
        yield b"x" * min(CHUNK, size - offset)
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def main() -> int:
    home = Path(tempfile.mkdtemp(prefix="bench-model-server-abuse-"))
    os.environ.update({"PIPELINE_HOME": str(home), "PIPELINE_MODEL_SERVER__PORT": "8198", "HF_HUB_OFFLINE": "1"})
    import httpx
    import openai

    from genai_pipeline.config import get_settings
    from genai_pipeline.local.model_server import start_model_server
    from genai_pipeline.local.services import Services

    settings = get_settings()
    services = Services(home)
    cap = settings.model_server.max_file_bytes
    start_model_server(settings, services)
    pid = services.pid("model-server")
    rows = []
    try:
        before = memory(pid)
        client = openai.OpenAI(base_url=settings.model_server.base_url, api_key="unused", max_retries=0, timeout=300)
        try:
            client.files.create(file=("big.bin", b"x" * UPLOAD_BYTES), purpose="user_data")
            rows.append(("official client, 200 MB", "stored (not refused)"))
        except openai.APIStatusError as error:
            rows.append(("official client, 200 MB", f"{error.status_code} {error.code}"))
        headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
        url = f"{settings.model_server.base_url}/files"
        for label, size in (("chunked, no length, 200 MB", UPLOAD_BYTES), ("chunked, just under the cap", cap - 10)):
            answer = httpx.post(url, content=chunked_form(size), headers=headers, timeout=300)
            rows.append((label, f"{answer.status_code} {answer.json().get('error', {}).get('code') or 'stored'}"))
        after = memory(pid)
        stored = sum(path.stat().st_size for path in (home / "model-server" / "files").glob("*.bin"))
        staged = list((home / "model-server" / "uploads").glob("*.partial"))
    finally:
        services.stop("model-server")
        shutil.rmtree(home, ignore_errors=True)

    limit = chart_limit()
    print(f"file cap {cap / MB:.0f} MB; chart memory limit {limit}")
    for label, outcome in rows:
        print(f"  {label:32}{outcome}")
    print(f"server RSS {before['VmRSS']} MB before, {after['VmRSS']} MB after")
    print(f"server peak (VmHWM) {before['VmHWM']} MB before, {after['VmHWM']} MB after")
    print(f"stored {stored / MB:.1f} MB; {len(staged)} partial uploads left behind")
    return 0 if after["VmHWM"] * MB < int(limit[:-2]) * UNITS[limit[-2:]] else 1


if __name__ == "__main__":
    raise SystemExit(main())
