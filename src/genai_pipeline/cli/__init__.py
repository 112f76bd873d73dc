"""``pipeline``: the project's command line (demo, local services, steps, models).

``pipeline demo`` is the embedded default end to end: the packaged models, a real Weaviate server, the
local model server, real Airflow with its scheduler and triggerer, the ``start`` DAG updating the source and
example Assets, then the ingestion run and the fine-tuning chain (examples -> gate -> fine-tune ->
champion/challenger) they trigger, each followed with a progress bar, then summaries. The parts: ``parser``
(arguments, entry point), ``stack`` (service control), ``runs`` (DAG runs followed), ``commands`` (the
rest) and ``reports`` (what is printed).
"""

from genai_pipeline.cli.parser import main

__all__ = ["main"]
