"""The README's other commands as a user runs them: `pipeline ingest PATH` (and its dry run), and Ctrl-C."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli_user import leftovers, pipeline, user_env
from conftest import free_port
from genai_pipeline.store import Store

pytestmark = pytest.mark.integration
SAMPLE = Path(__file__).resolve().parents[2] / "src" / "genai_pipeline" / "sample_kb"


def test_pipeline_ingest_takes_your_folder_and_a_dry_run_writes_nothing(tmp_path: Path) -> None:
    docs = tmp_path / "my-docs"
    shutil.copytree(SAMPLE, docs)
    (docs / "news-latin1.txt").write_bytes("Release notes by Fran\xe7ois and J\xfcrgen.\n".encode("latin-1") * 20)
    (docs / "page.html").write_text("<html><body><nav>menu</nav><h1>Page</h1><p>Body text.</p></body></html>")
    home = tmp_path / "home"
    env = user_env(home, API_PORT=str(free_port()))

    first = pipeline("ingest", str(docs), "--keep-running", env=env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "ingested         10" in first.stdout
    assert "decoded          my-docs/news-latin1.txt from iso8859-1" in first.stdout
    assert "time by step     plan" in first.stdout

    (docs / "overview.md").unlink()
    dry = pipeline("ingest", str(docs), "--dry-run", env=env)
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
    assert "DRY RUN" in dry.stdout and "would remove     1 documents" in dry.stdout
    store = Store(str(home / "store"))
    assert store.read_json("reports/ingest/latest.json")["removed_documents"] == 0
    assert not leftovers(home)


def test_ctrl_c_stops_cleanly_and_leaves_no_process(tmp_path: Path) -> None:
    from genai_pipeline.synthetic_corpus import generate_corpus

    generate_corpus(tmp_path / "corpus", 400, seed=1)  # long enough that tasks are running when Ctrl-C comes
    home = tmp_path / "home"
    env = user_env(home, API_PORT=str(free_port()))
    command = [sys.executable, "-m", "genai_pipeline.cli", "ingest", str(tmp_path / "corpus"), "--api-port"]
    process = subprocess.Popen(
        [*command, env["API_PORT"]],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As from a terminal: a pytest-xdist worker ignores SIGINT, and a child inherits that (the command then
        # ran to its end through the Ctrl-C).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 300
    while not _embedding(int(env["API_PORT"])):
        assert process.poll() is None and time.monotonic() < deadline, "no embed task started"
        time.sleep(1)
    process.send_signal(signal.SIGINT)  # what the terminal sends on Ctrl-C
    interrupted = time.monotonic()
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, out[-2000:] + err[-2000:]
    # Every service and task process gets SIGTERM together and one 8 s grace (one each, in turn, took a minute).
    assert time.monotonic() - interrupted <= 15
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == "interrupted: everything this command started is stopped"
    assert not leftovers(home)


def _embedding(port: int) -> bool:
    """Whether an embed task instance is running (Airflow's API, once it answers)."""
    from genai_pipeline.airflow_api import AirflowAPI

    try:
        api = AirflowAPI(port)
        runs = api.runs("ingest_knowledge_base")
    except OSError:
        return False
    return any(
        t["task_id"] == "ingest_batch.embed" and t["state"] == "running"
        for run in runs
        for t in api.task_instances("ingest_knowledge_base", run["dag_run_id"])
    )
