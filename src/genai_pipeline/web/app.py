"""The post-writing web page: type a topic, get a post grounded in the knowledge base, with its sources.

``create_app(settings)`` builds a FastAPI app with one self-contained HTML page (inline CSS and JS, nothing
fetched from elsewhere), a JSON endpoint that calls :func:`genai_pipeline.steps.generation.write_post`, and
a page per source chunk so a writer can check what the post was built from. Generation is blocking (an
embedding, a Weaviate query and a chat completion), so its endpoints are plain functions FastAPI runs in
its threadpool. ``python -m genai_pipeline.web.app --port N`` serves it with settings from the environment.
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import os
from typing import Any

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from genai_pipeline.bounds import Distance, SourcesPerPost
from genai_pipeline.clients.context import service_context
from genai_pipeline.config import Settings, get_settings
from genai_pipeline.steps.generation import GenerationError, read_chunk, write_post
from genai_pipeline.web.guard import RequestGuard

log = logging.getLogger(__name__)
DEFAULT_PORT = 8090
ROLES = {
    "champion": "champion",
    "fallback": "fallback: no champion model promoted yet",
    "requested": "requested",
}


class GenerateRequest(BaseModel):
    """What the page sends: a topic, and optionally k and the distance threshold (else the settings')."""

    topic: str
    k: SourcesPerPost | None = None
    threshold: Distance | None = None


def create_app(settings: Settings) -> FastAPI:
    """The web page app, bound to one settings instance (knowledge base, model endpoint, defaults)."""
    app = FastAPI(title="genai-pipeline posts", docs_url=None, redoc_url=None)
    page_settings = settings.web_page
    app.add_middleware(
        RequestGuard,
        allowed_hosts=page_settings.allowed_hosts,
        max_bytes=page_settings.max_request_bytes,
        password=page_settings.password.get_secret_value() if page_settings.password else None,
    )
    gen = settings.generation
    services = service_context(settings)  # one API client and embedder for every request; Weaviate per request

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        """The form and the result area; defaults come from the generation settings."""
        return _page(k=gen.k, threshold=gen.distance_threshold, max_topic_chars=gen.max_topic_chars)

    @app.get("/health")
    def health() -> dict[str, str]:
        """Liveness: the app answers (it does not probe Weaviate or the model endpoint)."""
        return {"status": "ok"}

    @app.post("/api/generate")
    def generate(request: GenerateRequest) -> dict[str, Any]:
        """Write one post; a request that cannot be answered is a 400 whose detail says why."""
        try:
            result = write_post(
                services,
                request.topic,
                k=request.k,
                threshold=request.threshold,
                alpha=gen.hybrid_alpha,
                model=None,
            )
        except GenerationError as error:
            raise HTTPException(400, str(error)) from error
        except _upstream_errors() as error:
            log.exception("generation failed upstream")
            raise HTTPException(502, f"generation failed: {type(error).__name__}: {error}") from error
        log.info(
            "post written with %s (%s) from %d source(s) in %.1fs",
            result["model"],
            result["model_role"],
            len(result["sources"]),
            result["seconds"],
        )
        return result

    @app.get("/chunk", response_class=HTMLResponse)
    def chunk(uri: str = Query(min_length=1), index: int = Query(ge=0)) -> HTMLResponse:
        """One source chunk as a page: its title, section, URI and text; 404 if it is not stored."""
        try:
            found = read_chunk(services, uri, index)
        except GenerationError as error:
            return HTMLResponse(_error_page("Source not found", str(error)), status_code=404)
        except _upstream_errors() as error:
            log.exception("reading chunk %d of %s failed", index, uri)
            return HTMLResponse(_error_page("Knowledge base unavailable", str(error)), status_code=502)
        return HTMLResponse(_chunk_page(found, uri, index))

    return app


def _upstream_errors() -> tuple[type[BaseException], ...]:
    """Failures of the services behind the page (model endpoint, Weaviate): answered 502, with the reason."""
    import openai
    from weaviate.exceptions import WeaviateBaseError

    from genai_pipeline.clients.weaviate import WeaviateUnavailable

    return (openai.APIError, WeaviateBaseError, WeaviateUnavailable)


_STYLE = """
  body { font-family: system-ui, sans-serif; max-width: 52rem; margin: 2rem auto; padding: 0 1rem; color: #1d1d1f; }
  h1 { font-size: 1.4rem; }
  form { display: grid; grid-template-columns: 1fr auto auto auto; gap: .5rem; align-items: end; }
  label { display: grid; gap: .2rem; font-size: .85rem; color: #555; }
  input { font: inherit; padding: .4rem; }
  input[type=number] { width: 6rem; }
  button { font: inherit; padding: .45rem 1rem; }
  [hidden] { display: none !important; }
  #progress { margin: 1rem 0; color: #0a58ca; }
  #error { margin: 1rem 0; padding: .6rem; border: 1px solid #d33; background: #fff3f3; color: #a00;
           white-space: pre-wrap; }
  #post, .text { white-space: pre-wrap; line-height: 1.5; padding: .8rem; background: #f6f6f8; border-radius: 4px; }
  .meta { color: #666; font-size: .85rem; }
  .sentence.flagged { background: #fff4cc; border-bottom: 2px dotted #b58900; }
  #verdict[data-status=published] { color: #1a7f37; }
  #verdict[data-status=needs_review] { color: #a00; font-weight: 600; }
  #removed { color: #777; text-decoration: line-through; font-size: .9rem; }
"""

_SCRIPT = """
const $ = (id) => document.getElementById(id);
const ROLES = __ROLES__;

function numberOrNull(text) {
  return text.trim() === "" ? null : Number(text);
}

function describe(data, response) {
  const detail = data && data.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((d) => `${(d.loc || []).slice(1).join(".") || "request"}: ${d.msg}`).join("\\n");
  }
  return `HTTP ${response.status} ${response.statusText}: see the web page's log`;
}

function chunkLink(source) {
  return "/chunk?" + new URLSearchParams({uri: source.uri, index: String(source.chunk_index)});
}

// The post as the quality gate left it: each sentence a span, each [n] a link to the chunk it cites; a kept
// sentence the gate repaired or could not verify is marked, with its flags as the tooltip.
function renderPost(data) {
  const post = $("post");
  post.replaceChildren();
  const kept = (data.sentences || []).filter((s) => s.kept);
  if (!kept.length) {
    post.textContent = data.post || "(no sentence passed the quality gate)";
    return;
  }
  const byNumber = new Map(data.sources.map((source) => [source.n, source]));
  for (const sentence of kept) {
    const span = document.createElement("span");
    span.className = "sentence" + (sentence.flags.length ? " flagged" : "");
    span.dataset.flags = sentence.flags.join(" ");
    if (sentence.flags.length) span.title = sentence.flags.join(", ").replaceAll("_", " ");
    span.append(sentence.text.replace(/[.!?]$/, ""));
    for (const n of sentence.citations) {
      const cite = document.createElement("a");
      cite.className = "cite";
      cite.href = chunkLink(byNumber.get(n));
      cite.target = "_blank";
      cite.rel = "noopener";
      cite.textContent = `[${n}]`;
      span.append(" ", cite);
    }
    span.append((sentence.text.match(/[.!?]$/) || [""])[0] + " ");
    post.append(span);
  }
}

function renderGate(data) {
  const quality = data.quality;
  const verdict = $("verdict");
  verdict.dataset.status = data.status;
  if (!quality) {
    verdict.textContent = "Not checked: the quality gate is off.";
  } else if (data.status === "published") {
    verdict.textContent = `Passed the quality gate: ${Math.round(quality.supported_share * 100)}% of ` +
      `${quality.sentences} sentences supported by the source they cite.`;
  } else {
    verdict.textContent = `Needs review: ${quality.reasons.join("; ")}.`;
  }
  const removed = $("removed");
  removed.replaceChildren();
  for (const sentence of (data.sentences || []).filter((s) => !s.kept)) {
    const item = document.createElement("li");
    item.textContent = `${sentence.text} (${sentence.flags.join(", ").replaceAll("_", " ")})`;
    removed.append(item);
  }
  $("removed-section").hidden = !removed.children.length;
}

function render(data) {
  renderPost(data);
  renderGate(data);
  $("model").textContent = `${data.model} (${ROLES[data.model_role] || data.model_role})`;
  $("meta").textContent = `template ${data.template} · ${data.seconds} s · ` +
    `${data.usage.prompt_tokens} prompt + ${data.usage.completion_tokens} completion tokens`;
  const list = $("sources");
  list.replaceChildren();
  for (const source of data.sources) {
    const item = document.createElement("li");
    item.value = source.n;
    const link = document.createElement("a");
    link.href = chunkLink(source);
    link.target = "_blank";
    link.rel = "noopener";
    link.textContent = source.section ? `${source.title} — ${source.section}` : (source.title || source.uri);
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = ` ${source.uri} #${source.chunk_index} · distance ${source.distance}`;
    item.append(link, meta);
    list.append(item);
  }
  $("result").hidden = false;
}

$("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const started = Date.now();
  const tick = () => { $("elapsed").textContent = `${Math.round((Date.now() - started) / 1000)} s`; };
  tick();
  const timer = setInterval(tick, 1000);
  $("error").hidden = true;
  $("result").hidden = true;
  $("generate").disabled = true;
  $("progress").hidden = false;
  const body = {topic: $("topic").value, k: numberOrNull($("k").value), threshold: numberOrNull($("threshold").value)};
  try {
    const response = await fetch("/api/generate", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify(body),
    });
    const data = await response.json().catch(() => null);
    if (!response.ok) throw new Error(describe(data, response));
    render(data);
  } catch (failure) {
    $("error").textContent = failure.message;
    $("error").hidden = false;
  } finally {
    clearInterval(timer);
    $("progress").hidden = true;
    $("generate").disabled = false;
  }
});
"""


def _page(*, k: int, threshold: float, max_topic_chars: int) -> str:
    """The whole page: inline style and script, defaults filled in."""
    script = _SCRIPT.replace("__ROLES__", json.dumps(ROLES))
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>Write a post · genai-pipeline</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>Write a post from the knowledge base</h1>
<form id="form" novalidate>
  <label>Topic (up to {max_topic_chars:,} characters)
    <input id="topic" name="topic" type="text" autofocus
           placeholder="e.g. How the pipeline keeps the knowledge base current">
  </label>
  <label>Sources (k)
    <input id="k" name="k" type="number" min="1" max="50" step="1" value="{k}">
  </label>
  <label>Max distance
    <input id="threshold" name="threshold" type="number" min="0.05" max="2" step="0.05" value="{threshold:g}">
  </label>
  <button id="generate" type="submit">Generate</button>
</form>
<p id="progress" role="status" hidden>Generating… <span id="elapsed"></span></p>
<div id="error" role="alert" hidden></div>
<section id="result" hidden>
  <h2>Post</h2>
  <p class="meta">Model: <strong id="model"></strong> <span id="meta"></span></p>
  <p id="verdict" role="status"></p>
  <div id="post"></div>
  <section id="removed-section" hidden>
    <h3>Removed by the quality gate</h3>
    <ul id="removed"></ul>
  </section>
  <h2>Sources</h2>
  <ol id="sources"></ol>
</section>
<script>{script}</script>
</body>
</html>
"""


def _chunk_page(found: dict[str, Any], uri: str, index: int) -> str:
    """A stored chunk as a page; every stored value is escaped."""
    title = html.escape(str(found.get("title") or uri))
    section = html.escape(str(found.get("section") or ""))
    text = html.escape(str(found.get("text") or ""))
    return f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>{title} · source</title><style>{_STYLE}</style></head>
<body>
<p><a href="/">← Write a post</a></p>
<h1 id="chunk-title">{title}</h1>
<p class="meta"><span id="chunk-section">{section}</span> · <span id="chunk-uri">{html.escape(uri)}</span>
  · chunk <span id="chunk-index">{index}</span></p>
<div id="chunk-text" class="text">{text}</div>
</body>
</html>
"""


def _error_page(title: str, message: str) -> str:
    """A page that says why a chunk cannot be shown."""
    return f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{_STYLE}</style></head>
<body>
<p><a href="/">← Write a post</a></p>
<div id="error" role="alert">{html.escape(message)}</div>
</body>
</html>
"""


def main(argv: list[str] | None = None) -> None:
    """Serve the page with settings from the environment (``PIPELINE_*``)."""
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m genai_pipeline.web.app", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the embedding model comes from a package, never from a hub
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(get_settings()), host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
