"""The post-writing web page in a real headless Chromium, against a real knowledge base and model server.

Weaviate holds a small handbook ingested in-process by the ingestion steps; the local model server writes
with its packaged chat model (no champion exists, so the fallback); the page runs as the background service
``pipeline up`` starts. Selenium types, clicks and reads what a writer would see.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import environ, free_port
from genai_pipeline.config import Settings, get_settings
from genai_pipeline.local.model_server import WEB_PAGE, start_model_server, start_web_page
from genai_pipeline.local.services import Services
from genai_pipeline.steps.registry import run_step

pytestmark = pytest.mark.integration
ENSURE_BROWSER = Path(__file__).resolve().parents[2] / "scripts" / "ensure-browser.sh"
GENERATION_TIMEOUT = 600  # CPU generation with the packaged chat model, on a machine that may be busy

HANDBOOK = {
    "key-rotation.md": """# Rotating archive encryption keys

## Schedule

The archive encryption keys of the Marlin storage cluster are rotated every 90 days. The rotation runs
at night, after the last backup has been verified, so no backup is ever written with a retired key.

## Procedure

An operator starts the rotation with `marlinctl keys rotate --cluster archive`. The old key stays
readable for 30 days so that restores of older backups keep working, then it is destroyed.
""",
    "coffee-machine.md": """# Descaling the office coffee machine

## When

The espresso machine on the third floor is descaled every second Friday. A red droplet light on the
front panel also means it needs descaling.

## How

Fill the tank with the citric acid solution from the cupboard, run the descale programme and rinse
twice with clean water before making coffee again.
""",
    "bike-parking.md": """# Bicycle parking

The bicycle cellar under building B opens with the staff badge. Cargo bikes park along the east wall;
electric bikes can charge at the sockets next to the door. The cellar is cleared of abandoned bikes
every spring.
""",
}
TOPIC = "How and when are the archive encryption keys rotated?"


@dataclass(frozen=True)
class Stack:
    """Where the page is, the settings it runs with, and every chunk text the knowledge base holds."""

    url: str
    settings: Settings
    chunk_texts: set[str]


def normalized(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, weaviate_env: dict[str, str]) -> Iterator[Stack]:
    """Ingest the handbook, then start the model server and the web page as background services."""
    home = tmp_path_factory.mktemp("web-page")
    corpus = home / "handbook"
    corpus.mkdir()
    for name, text in HANDBOOK.items():
        (corpus / name).write_text(text)
    web_port = free_port()
    env = {
        **weaviate_env,
        "PIPELINE_HOME": str(home / "pipeline"),
        "PIPELINE_WEAVIATE__COLLECTION": "WebPageKb",
        "PIPELINE_INGEST__SOURCES": json.dumps({"handbook": str(corpus)}),
        "PIPELINE_MODEL_SERVER__PORT": str(free_port()),
        # A short post keeps CPU generation quick; a slow machine gets a long timeout, not silent retries.
        "PIPELINE_GENERATION__MAX_TOKENS": "48",
        "PIPELINE_OPENAI__TIMEOUT_SECONDS": str(GENERATION_TIMEOUT),
        "PIPELINE_OPENAI__MAX_RETRIES": "0",
    }
    with environ(env):
        get_settings.cache_clear()
        try:
            settings = get_settings()
            run_step("create_schema", {})
            for batch in run_step("plan", {"run_id": "web page"}):
                run_step("load", run_step("embed", run_step("chunk", batch)))
            run_step("prune", {"run_id": "web page"})
            run_step("report", {"run_id": "web page"})
        finally:
            get_settings.cache_clear()
        services = Services(settings.home)
        try:
            start_model_server(settings, services, env)
            start_web_page(settings, services, web_port, env)
            yield Stack(f"http://127.0.0.1:{web_port}", settings, stored_texts(settings))
        finally:
            services.stop(WEB_PAGE)
            services.stop("model-server")


def stored_texts(settings: Settings) -> set[str]:
    """Every chunk's text as Weaviate stores it (whitespace normalized)."""
    from genai_pipeline.clients.weaviate import weaviate_client

    with weaviate_client(settings.weaviate) as client:
        collection = client.collections.get(settings.weaviate.collection)
        return {normalized(o.properties["text"]) for o in collection.iterator(return_properties=["text"])}


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """Headless Chromium through chromedriver; installed by scripts/ensure-browser.sh when missing."""
    if shutil.which("chromedriver") is None:
        result = subprocess.run(["bash", str(ENSURE_BROWSER)], capture_output=True, text=True, timeout=900)
        if shutil.which("chromedriver") is None:
            pytest.skip(
                "chromedriver is missing and scripts/ensure-browser.sh could not install it: "
                + (result.stderr.strip().splitlines() or ["no output"])[-1]
            )
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    options.add_argument("--window-size=1280,1000")
    driver = webdriver.Chrome(service=Service(executable_path=shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def generate(driver, url: str, topic: str, *, threshold: str | None = None) -> None:
    """Open the page, fill in the form and click Generate."""
    from selenium.webdriver.common.by import By

    driver.get(url)
    field = driver.find_element(By.ID, "topic")
    field.clear()
    field.send_keys(topic)
    if threshold is not None:
        driver.find_element(By.ID, "threshold").clear()
        driver.find_element(By.ID, "threshold").send_keys(threshold)
    driver.find_element(By.ID, "generate").click()


def test_a_topic_becomes_a_post_with_sources_linked_to_their_chunks(stack: Stack, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as shown
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(stack.url)
    # Defaults come from the settings; the page loads nothing from elsewhere.
    assert browser.find_element(By.ID, "k").get_attribute("value") == str(stack.settings.generation.k)
    assert float(browser.find_element(By.ID, "threshold").get_attribute("value")) == pytest.approx(
        stack.settings.generation.distance_threshold
    )
    assert not browser.find_element(By.ID, "progress").is_displayed()
    assert "://" not in browser.page_source.replace(stack.url, "")

    generate(browser, stack.url, TOPIC)
    progress = WebDriverWait(browser, 10, poll_frequency=0.05).until(
        shown.visibility_of_element_located((By.ID, "progress"))
    )
    assert "Generating" in progress.text
    assert not browser.find_element(By.ID, "generate").is_enabled()  # no second request while one runs
    WebDriverWait(browser, GENERATION_TIMEOUT).until(shown.visibility_of_element_located((By.ID, "result")))

    assert not browser.find_element(By.ID, "progress").is_displayed()
    assert not browser.find_element(By.ID, "error").is_displayed()
    assert browser.find_element(By.ID, "post").text.strip()
    # The quality gate's verdict, and every citation in the post a link to the chunk it cites.
    verdict = browser.find_element(By.ID, "verdict")
    assert verdict.get_attribute("data-status") in ("published", "needs_review"), verdict.text
    assert verdict.text.startswith(
        "Passed the quality gate" if verdict.get_attribute("data-status") == "published" else "Needs review: "
    )
    for cite in browser.find_elements(By.CSS_SELECTOR, "#post a.cite"):
        assert cite.get_attribute("href").startswith(f"{stack.url}/chunk?uri="), cite.get_attribute("href")
    for flagged in browser.find_elements(By.CSS_SELECTOR, "#post .sentence.flagged"):
        assert flagged.get_attribute("title"), "a marked sentence says why"
    for removed in browser.find_elements(By.CSS_SELECTOR, "#removed li"):
        assert removed.text.endswith(")"), "a removed sentence says why"
    model = browser.find_element(By.ID, "model").text
    assert stack.settings.generation.fallback_model in model and "fallback" in model
    links = browser.find_elements(By.CSS_SELECTOR, "#sources li a")
    assert links, "no source listed"
    assert all(link.get_attribute("href").startswith(f"{stack.url}/chunk?uri=") for link in links)
    assert "handbook/key-rotation.md" in browser.find_element(By.CSS_SELECTOR, "#sources li").text

    # Following the nearest source opens its chunk: text that really is in the knowledge base.
    title = links[0].text
    links[0].click()
    WebDriverWait(browser, 10).until(lambda driver: len(driver.window_handles) == 2)
    browser.switch_to.window(browser.window_handles[1])
    text = WebDriverWait(browser, 30).until(shown.visibility_of_element_located((By.ID, "chunk-text"))).text
    assert normalized(text) in stack.chunk_texts
    assert "marlinctl keys rotate" in text or "every 90 days" in text
    assert browser.find_element(By.ID, "chunk-title").text in title
    assert browser.find_element(By.ID, "chunk-uri").text == "handbook/key-rotation.md"
    browser.close()
    browser.switch_to.window(browser.window_handles[0])


def test_an_empty_topic_shows_why_and_no_post(stack: Stack, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as shown
    from selenium.webdriver.support.ui import WebDriverWait

    generate(browser, stack.url, "   ")
    error = WebDriverWait(browser, 30).until(shown.visibility_of_element_located((By.ID, "error")))
    assert "the topic is empty" in error.text
    assert not browser.find_element(By.ID, "result").is_displayed()
    assert not browser.find_element(By.ID, "progress").is_displayed()
    assert browser.find_element(By.ID, "generate").is_enabled()


def test_the_threshold_set_on_the_page_is_the_one_applied(stack: Stack, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as shown
    from selenium.webdriver.support.ui import WebDriverWait

    generate(browser, stack.url, TOPIC, threshold="0.01")
    error = WebDriverWait(browser, 60).until(shown.visibility_of_element_located((By.ID, "error")))
    assert "within distance 0.01" in error.text


def test_a_chunk_that_is_not_stored_is_a_404_page(stack: Stack) -> None:
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{stack.url}/chunk?uri=handbook/nope.md&index=0")
    assert missing.value.code == 404
    assert "no chunk 0 of handbook/nope.md" in missing.value.read().decode()
    with urllib.request.urlopen(f"{stack.url}/health") as response:
        assert json.loads(response.read()) == {"status": "ok"}
