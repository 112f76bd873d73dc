"""The store on a real S3 API (versitygw over a folder): values, listings, atomic writes, and steps using it.

Endpoint and credentials reach s3fs only through the ``AWS_*`` environment, as on a cluster.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import numpy as np
import psutil
import pytest
from s3fs import S3FileSystem
from s3fs.utils import FileExpired

from conftest import environ, free_port, write_tree
from fakes import fake_context
from genai_pipeline.config import Settings, get_settings
from genai_pipeline.local.s3_server import SERVICE, S3Server, start_s3_server
from genai_pipeline.local.services import Services
from genai_pipeline.store import Store

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "src" / "genai_pipeline" / "sample_kb"
# S3's smallest multipart part: a store whose block is this small sends larger values as multipart uploads.
PART = 5 * 2**20


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[S3Server, int]]:
    """The server for this module, and its pid."""
    home = tmp_path_factory.mktemp("s3-home")
    services = Services(home)
    try:
        server = start_s3_server(Settings().cache_dir, services, home / "buckets", free_port())
        yield server, services.pid(SERVICE)
    finally:
        services.stop(SERVICE)


@pytest.fixture
def s3_env(s3: tuple[S3Server, int], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A new bucket, the client environment and ``PIPELINE_STORE_URI`` pointing into it."""
    server, _ = s3
    # s3fs keeps one client per option set for the process: one made for another server must not be reused.
    S3FileSystem.clear_instance_cache()
    bucket = f"t{uuid.uuid4().hex[:16]}"
    env = {**server.client_env(), "PIPELINE_STORE_URI": f"s3://{bucket}/store"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    fsspec.filesystem("s3").mkdir(bucket)
    return env


@pytest.fixture
def store(s3_env: dict[str, str]) -> Store:
    return Store(s3_env["PIPELINE_STORE_URI"])


def uploads_in_progress(store: Store) -> list[dict]:
    """Multipart uploads begun and neither completed nor aborted."""
    return store.fs.list_multipart_uploads(store.root.split("/", 1)[0])


def test_the_server_listens_on_loopback_only(s3: tuple[S3Server, int]) -> None:
    _, pid = s3
    addresses = {conn.laddr.ip for conn in psutil.Process(pid).net_connections("inet") if conn.status == "LISTEN"}
    assert addresses == {"127.0.0.1"}


def test_values_round_trip_and_list(store: Store) -> None:
    store.write_json("runs/a/plan.json", {"batches": [1, 2]})
    assert store.write_jsonl("runs/a/rows.jsonl", ({"n": n} for n in range(1000))) == 1000
    vectors = np.arange(12, dtype=np.float32).reshape(3, 4)
    store.write_array("runs/b/vectors.npy", vectors)
    store.write_bytes("runs/b/empty.bin", b"")

    assert store.read_json("runs/a/plan.json") == {"batches": [1, 2]}
    assert [row["n"] for row in store.iter_jsonl("runs/a/rows.jsonl")] == list(range(1000))
    np.testing.assert_array_equal(store.read_array("runs/b/vectors.npy"), vectors)
    assert store.read_bytes("runs/b/empty.bin") == b""
    assert store.url("runs/a/plan.json") == f"s3://{store.root}/runs/a/plan.json"

    assert store.keys("runs") == ["a", "b"] and store.keys("runs/a") == ["plan.json", "rows.jsonl"]
    assert store.keys("nothing/here") == [] and store.count("nothing") == 0
    assert store.count("runs") == 4 and store.exists("runs/b/vectors.npy") and not store.exists("runs/c")
    store.write_json("runs/a/plan.json", {"batches": []})  # an overwrite
    assert store.read_json("runs/a/plan.json") == {"batches": []}

    store.remove("runs/a/plan.json")
    assert store.keys("runs/a") == ["rows.jsonl"]
    store.remove("runs")
    assert store.count("runs") == 0 and not store.exists("runs/b/vectors.npy")
    store.remove("runs")  # removing what is gone is not an error


def test_keys_another_process_writes_are_seen_at_once(store: Store, s3_env: dict[str, str]) -> None:
    """Steps run in other pods: a listing or a size this process saw earlier must not hide their writes."""
    store.write_json("results/0.json", {"old": True})
    assert store.keys("results") == ["0.json"] and not store.exists("results/1.json")
    script = "from genai_pipeline.store import Store; import sys; s = Store(sys.argv[1])\n"
    script += "s.write_json('results/1.json', 1); s.write_json('results/0.json', {'rewritten by': 'another pod'})"
    subprocess.run([sys.executable, "-c", script, s3_env["PIPELINE_STORE_URI"]], check=True)
    assert store.keys("results") == ["0.json", "1.json"] and store.exists("results/1.json")
    assert store.count("results") == 2
    assert store.read_json("results/0.json") == {"rewritten by": "another pod"}


def test_the_store_works_with_the_images_pruned_botocore(store: Store, s3_env: dict[str, str], tmp_path: Path) -> None:
    """The step images keep only some AWS API models (images/runtime/prune-botocore.sh).

    The store and the credential chain's clients must still work on what that script leaves; the rest is gone.
    """
    import botocore

    pruned = tmp_path / "site"
    shutil.copytree(Path(botocore.__file__).parent, pruned / "botocore")
    subprocess.run(["sh", str(REPO / "images/runtime/prune-botocore.sh"), str(pruned)], check=True)
    assert sorted(p.name for p in (pruned / "botocore" / "data").iterdir() if p.is_dir()) == [
        "s3", "signin", "sso", "sso-oidc", "sts"
    ]  # fmt: skip
    script = """import sys, botocore.session
from genai_pipeline.store import Store
assert botocore.__file__.startswith(sys.argv[2]), botocore.__file__
store = Store(sys.argv[1])
store.write_json("pruned/value.json", {"from": "pruned botocore"})
print(store.read_json("pruned/value.json"), store.keys("pruned"))
for service in ("sts", "sso", "sso-oidc", "signin"):  # web identity, SSO and login credentials' clients
    botocore.session.get_session().create_client(service, region_name="us-east-1")
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(pruned), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-c", script, s3_env["PIPELINE_STORE_URI"], str(pruned)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "{'from': 'pruned botocore'} ['value.json']" in done.stdout
    assert store.read_json("pruned/value.json") == {"from": "pruned botocore"}


@pytest.mark.parametrize("size", [1000, 2 * PART + 17], ids=["one PUT", "multipart"])
def test_an_interrupted_writer_leaves_no_key_and_no_upload(
    store: Store, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    monkeypatch.setattr(store.fs, "default_block_size", PART)
    store.write_bytes("kept", b"before")
    for key in ("new", "kept"):
        with pytest.raises(RuntimeError, match="step failed"), store.writer(key) as handle:
            handle.write(b"x" * size)
            raise RuntimeError("step failed halfway")
    assert store.keys("") == ["kept"] and store.read_bytes("kept") == b"before"
    assert uploads_in_progress(store) == []


@pytest.mark.parametrize("size", [200_000, PART + 3], ids=["one PUT", "multipart"])
def test_concurrent_writers_of_one_key_leave_one_whole_value(
    store: Store, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    """A zombie task and its retry write the same key: the last upload wins whole, and readers see no mix."""
    monkeypatch.setattr(store.fs, "default_block_size", PART)
    rounds = 8 if size < PART else 2
    store.write_bytes("results/00000.bin", b"a" * size)
    seen: set[bytes] = set()
    errors: list[BaseException] = []
    done = threading.Event()

    def write(mark: bytes) -> None:
        try:
            for _ in range(rounds):
                store.write_bytes("results/00000.bin", mark * size)
        except BaseException as error:  # collected, and asserted below
            errors.append(error)

    def read() -> None:
        while not (done.is_set() and seen):  # at least one whole read, even when the writers finish first
            try:
                data = store.read_bytes("results/00000.bin")
            except FileExpired:  # replaced between s3fs's HEAD and its GET: refused, as the ETag changed
                continue
            seen.add(data[:1] if len(data) == size and len(set(data)) == 1 else b"torn")

    writers = [threading.Thread(target=write, args=(mark,)) for mark in (b"a", b"b")]
    reader = threading.Thread(target=read)
    for thread in [*writers, reader]:
        thread.start()
    for thread in writers:
        thread.join()
    done.set()
    reader.join()
    assert errors == [] and seen <= {b"a", b"b"} and seen
    assert store.read_bytes("results/00000.bin") in (b"a" * size, b"b" * size)
    assert store.keys("results") == ["00000.bin"] and uploads_in_progress(store) == []


def test_concurrent_processes_writing_one_key_leave_one_whole_value(store: Store, s3_env: dict[str, str]) -> None:
    script = "from genai_pipeline.store import Store; import sys; s = Store(sys.argv[1])\n"
    script += "for _ in range(20): s.write_bytes('k', sys.argv[2].encode() * 300_000)"
    writers = [subprocess.Popen([sys.executable, "-c", script, s3_env["PIPELINE_STORE_URI"], mark]) for mark in "ab"]
    assert [writer.wait() for writer in writers] == [0, 0]
    assert store.read_bytes("k") in (b"a" * 300_000, b"b" * 300_000)


def test_the_fine_tuning_gate_publishes_a_dataset_in_the_bucket(
    store: Store, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Formatting, the cost gate and combine, their files and the dataset all under finetune/ in the bucket."""
    from genai_pipeline.steps import finetune_store as layout
    from genai_pipeline.steps.contracts import GateRequest, RunRequest
    from genai_pipeline.steps.examples import format_group, format_report, list_groups
    from genai_pipeline.steps.finetune_store import sha256
    from genai_pipeline.steps.gate import combine, evaluate

    post = "A post\nIts body, in a few words.\n"
    write_tree(tmp_path / "examples", {"train/g/one.txt": post, "validation/g/two.txt": post.replace("A", "B")})
    monkeypatch.setenv("PIPELINE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PIPELINE_FINE_TUNE__TRAIN_EXAMPLES", str(tmp_path / "examples" / "train"))
    monkeypatch.setenv("PIPELINE_FINE_TUNE__VALIDATION_EXAMPLES", str(tmp_path / "examples" / "validation"))
    settings = Settings()
    assert settings.store == f"s3://{store.root}"

    ctx = fake_context(settings)

    def publish(run: str) -> str:
        request = RunRequest(run_id=f"format-{run}")
        for group in list_groups(ctx, request):
            format_group(ctx, group)
        format_report(ctx, request)
        gate = GateRequest(run_id=f"gate-{run}", price_per_million_tokens=2.0, n_epochs=1, budget_usd=100.0)
        return combine(ctx, evaluate(ctx, gate)).dataset

    first = publish("1")
    assert store.read_json(layout.LATEST_DATASET) == {"dataset": first}
    assert store.keys(f"finetune/datasets/{first}") == ["manifest.json", "train.jsonl", "validation.jsonl"]
    train = store.read_bytes(layout.dataset(first, "train.jsonl"))
    assert store.read_json(layout.dataset(first, "manifest.json"))["train_sha256"] == sha256(train)
    assert store.keys(layout.GATE_FOLDER) == ["gate-1"]
    assert publish("2") == first  # same examples, same key; the staging copies of gate-1 are gone
    assert "train.jsonl" not in store.keys(f"{layout.GATE_FOLDER}/gate-1")
    assert store.keys("finetune/datasets") == [first, "latest.json"]


def test_ingestion_runs_on_a_bucket(settings_for, s3_env: dict[str, str], tmp_path: Path) -> None:
    """The ingestion steps as pods call them, their plan, batches and reports in the bucket."""
    from genai_pipeline.steps import ingest_store
    from genai_pipeline.steps.registry import run_step

    corpus = tmp_path / "kb"
    shutil.copytree(SAMPLE, corpus)
    settings, env = settings_for({"kb": corpus}, PIPELINE_INGEST__BATCH_DOCS="4", **s3_env)
    store = Store(settings.store)
    assert store.root.startswith(s3_env["PIPELINE_STORE_URI"].removeprefix("s3://"))
    with environ(env):
        get_settings.cache_clear()
        try:
            run_step("create_schema", {})
            batches = run_step("plan", {"run_id": "on s3"})
            assert len(batches) == 2 and store.exists(ingest_store.plan("on_s3"))
            loaded = [run_step("load", run_step("embed", run_step("chunk", batch))) for batch in batches]
            assert store.count(ingest_store.bulk("on_s3")) > 0
            run_step("prune", {"run_id": "on s3"})
            run_step("report", {"run_id": "on s3"})
            run_step("cleanup", {"run_id": "on s3"})
        finally:
            get_settings.cache_clear()
    assert store.keys(ingest_store.BULK_ROOT) == [] and store.exists(ingest_store.plan("on_s3"))
    report = store.read_json(ingest_store.LATEST_REPORT)
    assert report["failed_batches"] == [] and report["chunks"] == sum(batch["written"] for batch in loaded) > 0
