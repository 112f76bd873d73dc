"""A step image's entrypoint: ``python -m genai_pipeline.runner <step> '<json descriptor>'``.

Runs the same function the Airflow task runs and prints its JSON result, so a step can be tried in its
image without Airflow.
"""

from __future__ import annotations

import json
import logging
import sys

from genai_pipeline.steps.registry import run_step


def main(argv: list[str] | None = None) -> int:
    """Parse ``<step> [json]``, run the step, print the result."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m genai_pipeline.runner <step> '<json descriptor>'", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    payload = json.loads(args[1]) if len(args) > 1 else {}
    print(json.dumps(run_step(args[0], payload)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
