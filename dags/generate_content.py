"""Posts from the knowledge base and the champion model: one mapped task per topic, one Markdown file each.

Triggered by hand (the ``topics`` Param), by an update of the topics-file Asset, and, unless
``PIPELINE_GENERATION__REGENERATE_ON_CHAMPION`` is off, by a new champion: the posts are rewritten with it.
Each post's front matter holds the model, the template version, the sources, the time, the token usage and the
quality gate's verdict (``published`` or ``needs_review``) with its figures; ``report_posts`` counts them.
"""

from __future__ import annotations

from airflow.sdk import Param

from genai_pipeline.bounds import Distance, SourcesPerPost, param_schema
from genai_pipeline.config import get_settings
from genai_pipeline.orchestration.assets import POSTS, generation_schedule
from genai_pipeline.orchestration.pipeline_dag import pipeline_dag
from genai_pipeline.orchestration.step_task import step_task

GEN = get_settings().generation
TOPICS = {
    "run_id": "{{ run_id }}",
    "topics": "{{ params.topics | tojson }}",
    "k": "{{ params.k }}",
    "threshold": "{{ params.threshold }}",
}


@pipeline_dag(
    schedule=generation_schedule(),
    tags=["generation"],
    doc_md=__doc__,
    params={
        # Empty: the topics file, else PIPELINE_GENERATION__TOPICS. Each topic is a title, never a document.
        "topics": Param([], type="array", items={"type": "string", "minLength": 1, "maxLength": GEN.max_topic_chars}),
        "k": Param(GEN.k, **param_schema(SourcesPerPost)),
        "threshold": Param(GEN.distance_threshold, **param_schema(Distance)),
    },
)
def generate_content():
    topics = step_task("plan_topics")(TOPICS)
    posts = step_task("generate_post", outlets=[POSTS]).expand(topics)
    # How many posts the quality gate published; the run fails, saying why, when it published none (at once:
    # the count is a verdict over the written posts, and a retry reaches the same one).
    posts >> step_task("report_posts", retries=0)(TOPICS)


generate_content()
