"""A generated corpus of Markdown documents for benchmarks and the cluster e2e run.

Deterministic for a seed, so two runs (embedded and on a cluster) ingest byte-identical documents.
"""

from __future__ import annotations

import random
from pathlib import Path

VOCABULARY = (
    "pipeline airflow weaviate vector embedding chunk batch document asset schedule scheduler worker "
    "task mapping retry backoff token tokenizer model server cluster pod image secret namespace volume "
    "store descriptor manifest fingerprint hash upsert delete collection query retrieval generation "
    "fine-tuning dataset validation metric loss accuracy champion challenger deployment helm chart kind "
    "operator deferrable trigger event latency throughput memory cpu limit request security context "
    "the a of to and in for with on by from at as is are was be this that which each every when then"
)
WORDS = VOCABULARY.split()


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(8, 20))]
    return " ".join(words).capitalize() + "."


def generate_corpus(root: Path, docs: int, seed: int = 7) -> None:
    """Markdown documents of 250-450 words in 2-4 sections, spread over nested folders."""
    rng = random.Random(seed)
    for index in range(docs):
        folder = root / f"area-{index % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        parts = [f"# Document {index}"]
        for section in range(rng.randint(2, 4)):
            parts.append(f"## Section {section}")
            for _ in range(rng.randint(2, 3)):
                parts.append(" ".join(_sentence(rng) for _ in range(rng.randint(3, 5))))
        (folder / f"doc-{index:05d}.md").write_text("\n\n".join(parts) + "\n")
