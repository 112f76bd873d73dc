"""What the steps may import: their logic reaches Weaviate, the OpenAI API and Airflow only through others.

Walked two ways: every import statement in a step module (also those inside functions, the lazy ones), and the
modules that importing every step really loads.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import genai_pipeline.steps

STEPS = Path(genai_pipeline.steps.__file__).parent
# The services a step gets from its context (genai_pipeline.steps.context), never by itself.
SERVICES = (
    "weaviate",
    "openai",
    "genai_pipeline.clients.weaviate",
    "genai_pipeline.clients.knowledge_base",
    "genai_pipeline.clients.openai_compat",
)
FORBIDDEN = (*SERVICES, "airflow", "genai_pipeline.orchestration", "kubernetes")
# The registry builds the real context for a run: the one step module that names where the services come from.
COMPOSITION_ROOT = {"registry.py": {"genai_pipeline.clients.context"}}


def imports(path: Path) -> set[str]:
    """Every module an import statement in the file names, ``from m import n`` as both ``m`` and ``m.n``."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(f"{p}.") for p in packages)


def test_no_step_module_imports_a_service_client_airflow_or_the_embedder_factory() -> None:
    offences = {}
    for path in sorted(STEPS.glob("*.py")):
        allowed = COMPOSITION_ROOT.get(path.name, set())
        found = {
            name
            for name in imports(path) - allowed
            if within(name, FORBIDDEN) or name == "genai_pipeline.models.embeddings.make_embedder"
        }
        if found:
            offences[path.name] = sorted(found)
    assert offences == {}


def test_the_walk_sees_lazy_imports(tmp_path: Path) -> None:
    """The check above would catch a client imported inside a function, as the steps once did."""
    step = tmp_path / "step.py"
    step.write_text("def load():\n    from weaviate.classes.query import Filter\n    import openai\n")
    assert {"weaviate.classes.query", "openai"} <= imports(step)


def test_importing_every_step_loads_no_service_client_or_airflow() -> None:
    script = (
        "import importlib, json, pkgutil, sys\n"
        "import genai_pipeline.steps as steps\n"
        "for module in pkgutil.iter_modules(steps.__path__):\n"
        "    importlib.import_module(f'genai_pipeline.steps.{module.name}')\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    loaded = json.loads(subprocess.run([sys.executable, "-c", script], capture_output=True, check=True).stdout)
    assert [name for name in loaded if within(name, FORBIDDEN)] == []
    assert "genai_pipeline.steps.ingest" in loaded and "genai_pipeline.steps.generation" in loaded
