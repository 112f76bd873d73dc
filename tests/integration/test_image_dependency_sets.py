"""Each step image's steps run with only that image's dependency set installed, and the other sets' packages absent.

A venv per step image gets exactly what images/build.sh installs from uv.lock (the image's extras of
images/images.tsv; `s3` left out as with S3=0, so no step may lean on what s3fs pulls in), with the project on
PYTHONPATH and none of its other dependencies. The steps then run there on real code paths: ingestion end to end
across the chunk, embed and control sets on the session's Weaviate, the fine-tuning data steps, the generation
step's retrieval and quality gate. A step that imports what its image lacks fails here, naming the image, the step
and the module, instead of in a pod.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from importlib.metadata import packages_distributions
from pathlib import Path
from typing import Any

import pytest

from genai_pipeline.config import Settings
from genai_pipeline.models.packaged import embedding_model_dir

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
VENVS = REPO / "build" / "test-venvs"
UV = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")  # where the Makefile installs it

# The size goals, which no extra may undo: the step images that may carry each heavy package. Derived
# absence (below) follows pyproject, so it cannot see an extra that grows; this table can.
CARRIED_BY = {
    "torch": set(),
    "onnxruntime": {"embed", "generate"},
    "weaviate": {"control", "generate"},
    "matplotlib": {"finetune"},
    "numpy": {"control", "embed", "finetune", "generate"},
    "openai": {"embed", "finetune", "finetune-submit", "generate"},
}


def list_sh(*args: str) -> list[str]:
    """images/list.sh's answer, as images/build.sh reads the image list."""
    done = subprocess.run(["bash", str(REPO / "images" / "list.sh"), *args], capture_output=True, text=True, check=True)
    return done.stdout.split()


STEP_IMAGES = [name for name in list_sh("names") if list_sh("field", name, "kind") == ["step"]]


def uv(*args: str) -> str:
    """Run uv in the repository, on the lock as it is (``--frozen``: a test never relocks)."""
    done = subprocess.run([UV, *args], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, f"uv {' '.join(args)}:\n{done.stderr[-2000:]}"
    return done.stdout


def requirement_names(requirements: str) -> set[str]:
    """Normalised distribution names of a ``uv export`` requirements file."""
    return {normalise(m) for m in re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", requirements, re.MULTILINE)}


def normalise(name: str) -> str:
    """The PEP 503 form: the lock and the installed packages' metadata spell some names differently."""
    return re.sub(r"[-_.]+", "-", name).lower()


def export(image: str) -> str:
    """The image's requirements, exported from uv.lock as images/build.sh exports them (hashes aside, S3=0)."""
    return uv("export", "--frozen", "--no-dev", "--no-emit-project", "--no-hashes", *list_sh("export-args", image))


@pytest.fixture(scope="session")
def image_venv() -> Callable[[str], Path]:
    """A venv per step image, kept in build/test-venvs until uv.lock, the image's extras or the Python change."""

    def build(image: str) -> Path:
        requirements = export(image)
        key = hashlib.sha256(f"{sys.version}\n{requirements}".encode()).hexdigest()[:12]
        venv = VENVS / f"{image}-{key}"
        VENVS.mkdir(parents=True, exist_ok=True)
        with open(VENVS / f".{image}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two pytest workers build an image's venv once
            if not (venv / ".complete").is_file():
                for stale in VENVS.glob(f"{image}-{'?' * len(key)}"):  # not finetune-submit's for finetune
                    shutil.rmtree(stale)
                listed = VENVS / f"{image}.txt"
                listed.write_text(requirements)
                uv("venv", "--quiet", "--python", sys.executable, str(venv))
                uv(
                    "pip", "install", "--quiet", "--no-deps", "--compile-bytecode",  # as pip does in an image
                    f"--python={venv}/bin/python", f"--requirements={listed}",
                )  # fmt: skip
                (venv / ".complete").touch()
        return venv

    return build


def foreign_modules(image: str) -> set[str]:
    """Top-level modules of the lock's packages outside the image's set (provided by no package inside it).

    The dev environment has every extra installed: its metadata says which module each package provides.
    """
    own = requirement_names(export(image))
    others = requirement_names(uv("export", "--frozen", "--no-emit-project", "--no-hashes", "--all-extras")) - own
    modules = set()
    for module, dists in packages_distributions().items():
        names = {normalise(d) for d in dists}
        if names & others and not names & own and module.isidentifier() and module not in sys.stdlib_module_names:
            modules.add(module)
    return modules


def run_in(venv: Path, image: str, what: str, args: list[str], env: dict[str, str]) -> str:
    """Run the venv's Python; on failure say which image and step, and the module it lacked if that was why."""
    done = subprocess.run([str(venv / "bin" / "python"), *args], env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        missing = re.findall(r"No module named '([^']+)'", done.stderr)
        cause = f"imports {missing[-1]!r}, which the {image} image's dependency set lacks" if missing else "failed"
        pytest.fail(f"image {image}, {what}: {cause}\n{done.stderr[-3000:]}")
    return done.stdout


def run_step(venv: Path, image: str, step: str, payload: Any, env: dict[str, str]) -> Any:
    """One step through the image's entrypoint (``python -m genai_pipeline.runner``), its JSON result."""
    out = run_in(venv, image, f"step {step}", ["-m", "genai_pipeline.runner", step, json.dumps(payload)], env)
    return json.loads(out.splitlines()[-1])


@pytest.fixture(scope="module")
def step_env(tmp_path_factory: pytest.TempPathFactory, weaviate_env: dict[str, str]) -> dict[str, str]:
    """What a step pod gets: a store, the model folder, the services; nothing else of this process's environment."""
    home = tmp_path_factory.mktemp("image-sets")
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "PYTHONPATH": str(REPO / "src"),
        "HF_HUB_OFFLINE": "1",
        **weaviate_env,
        "PIPELINE_HOME": str(home / "home"),
        "PIPELINE_STORE_URI": str(home / "store"),
        "PIPELINE_EMBEDDING__LOCAL_MODEL_DIR": str(embedding_model_dir(Settings().cache_dir)),
        "PIPELINE_WEAVIATE__COLLECTION": "KbImageSets",
        "PIPELINE_INGEST__SOURCES": json.dumps({"pipeline-docs": str(REPO / "src" / "genai_pipeline" / "sample_kb")}),
    }


IMPORTS_AND_ABSENCE = """
import importlib, importlib.util, json, sys
import genai_pipeline.runner
from genai_pipeline.steps.registry import STEPS
image, modules = sys.argv[1], sys.argv[2:]
lacking = {}
for name, spec in STEPS.items():
    if spec.image == image:
        module, function = spec.target.split(":")
        try:
            getattr(importlib.import_module(module), function)
        except ModuleNotFoundError as error:
            lacking[name] = error.name
present = [m for m in modules if importlib.util.find_spec(m) is not None]
print(json.dumps({"lacking": lacking, "present": present}))
"""


@pytest.mark.parametrize("image", sorted(STEP_IMAGES))
def test_steps_import_and_the_other_sets_are_absent(image: str, image_venv, step_env: dict[str, str]) -> None:
    venv = image_venv(image)
    heavy = {module for module, images in CARRIED_BY.items() if image not in images}
    foreign = foreign_modules(image)
    out = run_in(
        venv, image, "importing its steps", ["-c", IMPORTS_AND_ABSENCE, image, *sorted(heavy | foreign)], step_env
    )
    found = json.loads(out)
    assert not found["lacking"], f"image {image}: steps import modules its set lacks (step: module): {found['lacking']}"
    assert not found["present"], f"image {image}: other images' packages are importable in its venv: {found['present']}"


@pytest.fixture(scope="module")
def ingested(image_venv, step_env: dict[str, str]) -> list[dict[str, Any]]:
    """One real ingestion of the sample knowledge base, each step in its own image's venv; the loaded batches."""
    chunk, embed, control = image_venv("chunk"), image_venv("embed"), image_venv("control")
    request = {"run_id": "image-sets"}
    run_step(control, "control", "create_schema", {}, step_env)
    loaded = []
    for task in run_step(control, "control", "plan", request, step_env):
        chunked = run_step(chunk, "chunk", "chunk", task, step_env)
        embedded = run_step(embed, "embed", "embed", chunked, step_env)
        loaded.append(run_step(control, "control", "load", embedded, step_env))
    run_step(control, "control", "prune", request, step_env)
    summary = run_step(control, "control", "report", request, step_env)
    run_step(control, "control", "cleanup", request, step_env)
    assert summary["chunks"] == sum(batch["written"] for batch in loaded) > 0, summary
    return loaded


def test_ingestion_runs_across_the_chunk_embed_and_control_sets(ingested: list[dict[str, Any]]) -> None:
    assert all(batch["chunks"] == batch["written"] for batch in ingested), ingested


GENERATE = """
import sys
from genai_pipeline.clients.context import service_context
from genai_pipeline.config import get_settings
from genai_pipeline.steps.generation import gate, retrieve
ctx = service_context(get_settings())
sources = retrieve(ctx, sys.argv[1], k=3, threshold=2.0, alpha=None)
assert sources, "nothing retrieved"
checked = gate(ctx, f"{sources[0].text[:200]} [1]", sources)
ctx.openai
print(len(sources), checked["status"])
"""


def test_generate_retrieves_from_what_the_other_sets_loaded(
    ingested: list[dict[str, Any]], image_venv, step_env: dict[str, str]
) -> None:
    venv = image_venv("generate")
    request = {"run_id": "image-sets", "topics": ["How ingestion batches documents"], "k": 3, "threshold": 1.0}
    (task,) = run_step(venv, "generate", "plan_topics", request, step_env)
    out = run_in(venv, "generate", "retrieval, quality gate and API client", ["-c", GENERATE, task["topic"]], step_env)
    assert int(out.split()[0]) > 0, out


PLOT = """
from genai_pipeline.steps.finetune_metrics import parse_results, plot
png = plot(parse_results(b"step,train_loss\\n1,2.0\\n2,1.5\\n"), "loss")
assert png.startswith(b"\\x89PNG"), png[:8]
"""


def test_finetune_formats_gates_combines_and_plots(image_venv, step_env: dict[str, str]) -> None:
    venv = image_venv("finetune")
    request = {"run_id": "image-sets"}
    groups = run_step(venv, "finetune", "list_example_groups", request, step_env)
    for group in groups:
        run_step(venv, "finetune", "format_examples", group, step_env)
    run_step(venv, "finetune", "format_report", request, step_env)
    gate = {"run_id": "image-sets", "price_per_million_tokens": 1.0, "n_epochs": 1, "budget_usd": 100.0}
    evaluation = run_step(venv, "finetune", "evaluate_examples", gate, step_env)
    dataset = run_step(venv, "finetune", "combine_examples", evaluation, step_env)
    run_in(venv, "finetune", "the loss plot (fine_tune_results)", ["-c", PLOT], step_env)
    assert len(groups) == 4 and evaluation["billing_tokens"] > 0, (groups, evaluation)
    assert dataset, dataset


API_CLIENT = """
import genai_pipeline.steps.finetune
from genai_pipeline.clients.context import service_context
from genai_pipeline.config import get_settings
print(type(service_context(get_settings()).openai).__name__)
"""


def test_finetune_submit_builds_its_api_client(image_venv, step_env: dict[str, str]) -> None:
    out = run_in(
        image_venv("finetune-submit"), "finetune-submit", "step submit_fine_tune's client", ["-c", API_CLIENT], step_env
    )
    assert out.split()[-1] == "OpenAI", out


API_EMBEDDINGS = """
from genai_pipeline.config import get_settings
from genai_pipeline.models.embeddings import make_embedder, make_token_counter
settings = get_settings()
"""


@pytest.mark.parametrize(
    ("image", "what", "code", "expected"),
    [
        ("chunk", "step chunk's token counter", "print(type(make_token_counter(settings)).__name__)", "TiktokenTokens"),
        ("embed", "step embed's embedder", "print(type(make_embedder(settings)).__name__)", "OpenAIEmbedder"),
    ],
)
def test_embeddings_through_the_api(
    image: str, what: str, code: str, expected: str, image_venv, step_env: dict[str, str]
) -> None:
    """With the API provider, chunking counts OpenAI's tokens (tiktoken, offline) and embed uses the API client."""
    env = {**step_env, "PIPELINE_EMBEDDING__PROVIDER": "openai", "PIPELINE_EMBEDDING__MODEL": "text-embedding-3-small"}
    out = run_in(image_venv(image), image, f"{what} (API provider)", ["-c", API_EMBEDDINGS + code], env)
    assert out.split()[-1] == expected, out
