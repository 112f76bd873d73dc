"""What `make install` leaves: byte code for every module an Airflow task process imports.

Where PYTHONDONTWRITEBYTECODE is set (CI machines set it), Python never writes a module's cache, so a module
installed without one is compiled again in every process that imports it: in each Airflow component, each task
process and each `airflow dags test`, seconds of CPU apiece.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LIST_IMPORTED = """
import sys
import airflow.sdk, genai_pipeline.orchestration.step_task, genai_pipeline.steps.registry
files = {getattr(m, "__file__", None) or "" for m in list(sys.modules.values())}
print("\\n".join(sorted(f for f in files if f.endswith(".py"))))
"""


def test_every_module_a_task_process_imports_has_its_byte_code_cached() -> None:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run([sys.executable, "-c", LIST_IMPORTED], env=env, capture_output=True, text=True, check=True)
    ours = [Path(f) for f in done.stdout.split() if f.startswith((sys.prefix, str(REPO / "src")))]
    assert len(ours) > 500  # Airflow's SDK alone imports hundreds
    uncached = [str(f) for f in ours if not Path(importlib.util.cache_from_source(str(f))).is_file()]
    assert uncached == [], f"{len(uncached)} modules without byte code (run `make install`): {uncached[:5]}"
