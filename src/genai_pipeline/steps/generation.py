"""Retrieval-augmented posts: a topic in, a post grounded in the knowledge base out, with its sources.

The topic is embedded with the provider and model the collection was built with (the collection records
which, and a mismatch is refused: vectors of two models are not comparable). Retrieval takes the nearest
chunks (optionally hybrid with BM25), drops those beyond the distance threshold and keeps the best chunk per
source. The prompt is the versioned template the models are fine-tuned and scored on (steps/prompt.py), which
fences every chunk as data: a chunk cannot close its fence, and the instructions say that text inside one is
never to be obeyed. The champion model writes the post; with no champion yet the configured fallback model
does, and the log says so. Then the quality gate (steps/post_quality.py) reads it: what it publishes is cited,
supported and loop-free, and a post that fails is written as ``needs_review`` with its flags.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

import fsspec

from genai_pipeline.config import Settings
from genai_pipeline.steps import lineage
from genai_pipeline.steps.context import StepContext
from genai_pipeline.steps.contracts import GeneratedPost, PostsSummary, TopicsRequest, TopicTask
from genai_pipeline.steps.finetune_store import champion_model, sha256
from genai_pipeline.steps.keys import safe_name
from genai_pipeline.steps.load import embedding_model_id
from genai_pipeline.steps.prompt import TEMPLATE_VERSION, Source, build_messages
from genai_pipeline.store import Store

log = logging.getLogger(__name__)
# Chunks asked of Weaviate per source kept, so deduplication by source still fills k.
OVERFETCH = 4


class GenerationError(RuntimeError):
    """A request that cannot be answered as asked; the message says why and what to do."""


def check_topic(topic: str, max_chars: int) -> str:
    """The topic stripped, or GenerationError for an empty or oversized one."""
    cleaned = " ".join(topic.split())
    if not cleaned:
        raise GenerationError("the topic is empty: give a few words to write about")
    if len(cleaned) > max_chars:
        raise GenerationError(
            f"the topic is {len(cleaned):,} characters, over the limit of {max_chars:,} "
            "(PIPELINE_GENERATION__MAX_TOPIC_CHARS): a topic is a title, not a document"
        )
    return cleaned


def dedupe_by_source(candidates: list[Source], k: int, threshold: float) -> list[Source]:
    """The best chunk of each source within the distance threshold, nearest first, at most k."""
    kept: dict[str, Source] = {}
    for source in sorted(candidates, key=lambda s: s.distance):
        if source.distance <= threshold and source.uri not in kept:
            kept[source.uri] = source
    return list(kept.values())[:k]


def current_model(ctx: StepContext) -> tuple[str, str]:
    """The champion model, or the fallback when none was promoted yet; and which of the two it is."""
    champion = champion_model(ctx.store)
    if champion is not None:
        return champion, "champion"
    fallback = ctx.settings.generation.fallback_model
    log.warning("no champion model yet: writing with the fallback %s (PIPELINE_GENERATION__FALLBACK_MODEL)", fallback)
    return fallback, "fallback"


def retrieve(ctx: StepContext, topic: str, *, k: int, threshold: float, alpha: float | None) -> list[Source]:
    """Nearest chunks of the knowledge base to a topic, one per source; GenerationError if it cannot be done."""
    name, wanted = ctx.settings.weaviate.collection, embedding_model_id(ctx.settings)
    with ctx.knowledge_base() as kb:
        if not kb.exists():
            raise GenerationError(f"the knowledge base {name!r} does not exist yet: run ingestion first")
        recorded = kb.embedding_model()
        if recorded != wanted:
            raise GenerationError(
                f"the collection {name!r} was built with the embedding model {recorded or 'unknown'}, but this "
                f"pipeline embeds with {wanted}: their vectors are not comparable (re-ingest, or set "
                "PIPELINE_EMBEDDING__PROVIDER / __MODEL to the collection's)"
            )
        if kb.count() == 0:
            raise GenerationError(f"the knowledge base {name!r} is empty: run ingestion first; nothing was invented")
        vector = ctx.embedder.embed([topic])[0].tolist()
        candidates = kb.nearest(vector, text=topic, limit=k * OVERFETCH, alpha=alpha)
    return dedupe_by_source(candidates, k, threshold)


def write_post(
    ctx: StepContext,
    topic: str,
    *,
    alpha: float | None,
    model: str | None,
    k: int | None = None,
    threshold: float | None = None,
) -> dict[str, Any]:
    """Retrieve, prompt and generate one post; returns the post, its sources, the model and the usage.

    k and the threshold default to the generation settings (the CLI and the web page pass what the user set).
    """
    settings = ctx.settings
    gen = settings.generation
    k = gen.k if k is None else k
    threshold = gen.distance_threshold if threshold is None else threshold
    topic = check_topic(topic, gen.max_topic_chars)
    started = time.perf_counter()
    sources = retrieve(ctx, topic, k=k, threshold=threshold, alpha=alpha)
    if not sources:
        raise GenerationError(
            f"nothing in the knowledge base is within distance {threshold} of this topic: no post without sources "
            "(raise the threshold, or ingest documents about it)"
        )
    chosen, role = (model, "requested") if model else current_model(ctx)
    messages = build_messages(settings.fine_tune.system_prompt, gen.group, topic, sources)
    reply = ctx.openai.chat.completions.create(
        model=chosen,
        messages=messages,
        temperature=gen.temperature,
        max_tokens=gen.max_tokens,
        frequency_penalty=gen.frequency_penalty,
        presence_penalty=gen.presence_penalty,
    )
    usage = reply.usage
    return {
        "topic": topic,
        **gate(ctx, (reply.choices[0].message.content or "").strip(), sources),
        "model": chosen,
        "model_role": role,
        "template": TEMPLATE_VERSION,
        "sources": [
            {
                "n": n,
                "uri": s.uri,
                "chunk_index": s.chunk_index,
                "section": s.section,
                "title": s.title,
                "distance": round(s.distance, 4),
            }
            for n, s in enumerate(sources, start=1)
        ],
        "usage": {
            "prompt_tokens": usage.prompt_tokens if usage else 0,
            "completion_tokens": usage.completion_tokens if usage else 0,
        },
        "seconds": round(time.perf_counter() - started, 3),
    }


def gate(ctx: StepContext, text: str, sources: list[Source]) -> dict[str, Any]:
    """The post as the quality gate leaves it: text, status, figures, and every sentence with its findings.

    With the gate off the text is the model's, ``unchecked``, with no figures.
    """
    from genai_pipeline.steps.post_quality import check_post

    quality = ctx.settings.generation.quality
    if not quality.enabled:
        return {"post": text, "status": "unchecked", "quality": None, "sentences": []}
    result = check_post(text, [s.text for s in sources], ctx.embedder.embed, quality)
    if result.status != "published":
        log.warning("post sent to review: %s", "; ".join(result.reasons))
    return {
        "post": result.text,
        "status": result.status,
        "quality": result.figures(),
        "sentences": [sentence.as_dict() for sentence in result.sentences],
    }


def read_chunk(ctx: StepContext, uri: str, chunk_index: int) -> dict[str, Any]:
    """One stored chunk (title, section, text) by source URI and index, or GenerationError if there is none."""
    with ctx.knowledge_base() as kb:
        found = kb.chunk(uri, chunk_index)
    if found is None:
        raise GenerationError(f"no chunk {chunk_index} of {uri} in the knowledge base")
    return found


def slug(topic: str) -> str:
    """A file name for a topic: readable words plus a short hash, so two topics never share a file."""
    words = re.sub(r"[^a-z0-9]+", "-", topic.lower()).strip("-")[:60].rstrip("-") or "post"
    return f"{words}-{sha256(topic.encode())[:8]}"


def topics_of(settings: Settings, request: TopicsRequest) -> list[str]:
    """The run's topics: the Param if given, else the topics file, else the configured defaults."""
    if request.topics:
        return request.topics
    if settings.generation.topics_file:
        with fsspec.open(settings.generation.topics_file, "rt", encoding="utf-8") as handle:
            return [line.strip() for line in handle if line.strip() and not line.lstrip().startswith("#")]
    return settings.generation.topics


def plan_topics(ctx: StepContext, request: TopicsRequest) -> list[TopicTask]:
    """One task per valid topic; an empty or oversized one is reported and left out."""
    settings = ctx.settings
    tasks, refused = [], []
    for topic in topics_of(settings, request):
        try:
            cleaned = check_topic(topic, settings.generation.max_topic_chars)
        except GenerationError as error:
            refused.append(f"{topic[:60]!r}: {error}")
            continue
        tasks.append(
            TopicTask(
                run_key=safe_name(request.run_id),
                topic=cleaned,
                label=slug(cleaned),
                k=request.k,
                threshold=request.threshold,
            )
        )
    for item in refused:
        log.warning("topic left out: %s", item)
    if not tasks:
        raise GenerationError(f"no topic to write about ({len(refused)} refused: {'; '.join(refused) or 'none given'})")
    return tasks


def output_store(settings: Settings) -> Store:
    """Where posts go: ``PIPELINE_GENERATION__OUTPUT_URI`` or ``<store>/posts``."""
    return Store(settings.generation.output_uri or f"{settings.store.rstrip('/')}/posts")


def generate_post(ctx: StepContext, task: TopicTask) -> GeneratedPost:
    """Write one post as Markdown with front matter (model, template, sources, time, usage)."""
    settings = ctx.settings
    result = write_post(
        ctx, task.topic, k=task.k, threshold=task.threshold, alpha=settings.generation.hybrid_alpha, model=None
    )
    store = output_store(settings)
    name = f"{task.label}.md"
    store.write_bytes(name, to_markdown(result).encode())
    return GeneratedPost(
        label=task.label,
        topic=result["topic"],
        path=store.path(name),
        model=result["model"],
        model_role=result["model_role"],
        template=result["template"],
        status=result["status"],
        quality=result["quality"],
        sources=result["sources"],
        usage=result["usage"],
        seconds=result["seconds"],
        lineage=lineage.lineage(
            [
                *(lineage.document(settings.ingest.sources, source["uri"]) for source in result["sources"]),
                lineage.collection(settings),
                lineage.model(settings, result["model"]),
            ],
            [lineage.location(store.url(name))],
        ),
    )


def front_matter(markdown: str) -> dict[str, Any]:
    """The front matter of a post :func:`to_markdown` wrote (each value is JSON)."""
    lines = markdown.split("\n")
    end = lines.index("---", 1)
    return {key: json.loads(value) for key, _, value in (line.partition(": ") for line in lines[1:end])}


def report_posts(ctx: StepContext, request: TopicsRequest) -> PostsSummary:
    """How many of the run's posts the quality gate published; GenerationError when it published none.

    A run whose every post was sent to review must not end green: its posts are written, flagged, and the run
    says so.
    """
    store = output_store(ctx.settings)
    posts = []
    for task in plan_topics(ctx, request):
        front = front_matter(store.read_bytes(f"{task.label}.md").decode())
        quality = front.get("quality") or {}
        posts.append(
            {
                "label": task.label,
                "topic": task.topic,
                "status": front["status"],
                "reasons": quality.get("reasons", []),
                "path": store.path(f"{task.label}.md"),
            }
        )
    summary = PostsSummary(
        published=sum(p["status"] == "published" for p in posts),
        needs_review=sum(p["status"] == "needs_review" for p in posts),
        unchecked=sum(p["status"] == "unchecked" for p in posts),
        posts=posts,
    )
    log.info("%s", summary.line())
    if summary.needs_review == len(posts):
        details = "; ".join(f"{p['label']}: {', '.join(p['reasons'])}" for p in posts)
        raise GenerationError(
            f"no post passed the quality gate: all {len(posts)} were written with status needs_review ({details}); "
            "their front matter flags every sentence that failed"
        )
    return summary


def to_markdown(result: dict[str, Any]) -> str:
    """The post as a Markdown file: YAML front matter (JSON values are YAML), the text, its numbered sources."""
    front = {
        "topic": result["topic"],
        "model": result["model"],
        "status": result["status"],
        "model_role": result["model_role"],
        "template": result["template"],
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "quality": result["quality"],
        "usage": result["usage"],
        "sources": result["sources"],
    }
    lines = ["---", *(f"{key}: {json.dumps(value)}" for key, value in front.items()), "---", ""]
    lines += [result["post"], "", "## Sources", ""]
    lines += [
        f"{s['n']}. {s['title']} — {s['section'] or '(top)'} (`{s['uri']}`, chunk {s['chunk_index']})"
        for s in result["sources"]
    ]
    return "\n".join(lines) + "\n"
