"""The web page answers only its own Host names and refuses big bodies, before any generation runs."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from genai_pipeline.config import Settings
from genai_pipeline.web.app import create_app
from genai_pipeline.web.guard import host_allowed, host_name, password_given


@pytest.fixture
def page(monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setenv("PIPELINE_WEB_PAGE__ALLOWED_HOSTS", '["localhost", "127.0.0.1", "*.svc.cluster.local"]')
    monkeypatch.setenv("PIPELINE_WEB_PAGE__MAX_REQUEST_BYTES", "2048")
    return TestClient(create_app(Settings()), base_url="http://localhost:8090")


def test_a_rebinding_host_is_refused_and_the_page_answers_its_own_names(page: TestClient) -> None:
    assert page.get("/", headers={"Host": "attacker.example:8090"}).status_code == 400
    assert page.post("/api/generate", json={"topic": "x"}, headers={"Host": "evil.test"}).status_code == 400
    for host in ("localhost:8090", "127.0.0.1", "web.genai.svc.cluster.local"):
        assert page.get("/", headers={"Host": host}).status_code == 200, host
    # The kubelet probes by the pod's IP: the health check answers any Host.
    assert page.get("/health", headers={"Host": "10.1.2.3:8090"}).json() == {"status": "ok"}


def test_a_body_over_the_cap_is_refused_declared_or_streamed(page: TestClient) -> None:
    big = {"topic": "x" * 3000}
    declared = page.post("/api/generate", json=big)
    assert declared.status_code == 413 and "2048 bytes" in declared.json()["detail"]
    streamed = page.post("/api/generate", content=iter([b'{"topic": "', b"x" * 3000, b'"}']))  # chunked: no length
    assert streamed.status_code == 413


@pytest.mark.parametrize(
    ("header", "name"), [("LocalHost:8090", "localhost"), ("[::1]:8090", "[::1]"), ("10.0.0.5", "10.0.0.5")]
)
def test_host_names_drop_the_port(header: str, name: str) -> None:
    assert host_name(header) == name


def test_a_wildcard_matches_subdomains_only() -> None:
    assert host_allowed("a.svc.cluster.local", ["*.svc.cluster.local"])
    assert not host_allowed("svc.cluster.local.evil.test", ["*.svc.cluster.local"])
    assert not host_allowed("evilsvc.cluster.local", ["*.svc.cluster.local"])


def test_with_a_password_the_page_asks_for_it_and_health_stays_open(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_WEB_PAGE__PASSWORD", "s3cret-pass")
    page = TestClient(create_app(Settings()), base_url="http://localhost:8090")
    refused = page.get("/")
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Basic ")  # browser prompts
    assert page.post("/api/generate", json={"topic": "x"}, auth=("anyone", "wrong")).status_code == 401
    assert page.get("/", auth=("editor", "s3cret-pass")).status_code == 200
    assert page.get("/health").json() == {"status": "ok"}  # the kubelet's probe carries no password
    assert "s3cret-pass" not in refused.text


@pytest.mark.parametrize(
    ("header", "given"),
    [
        ("Basic dTpwdw==", True),  # u:pw
        ("basic dTpwdw==", True),
        ("Basic OnB3", True),  # :pw, no user name
        ("Basic dTpwdzI=", False),  # u:pw2
        ("Bearer pw", False),
        ("Basic not-base64!", False),
        ("", False),
    ],
)
def test_the_password_is_read_from_basic_authorization_only(header: str, given: bool) -> None:
    assert password_given(header, "pw") is given
