"""Shared fixtures: a real Weaviate server on free ports and an isolated pipeline home per test."""

from __future__ import annotations

import email.policy
import json
import os
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme

# Airflow reads its home at import: keep tests away from ~/airflow and from a developer's demo.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="pipeline-tests-airflow-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

from genai_pipeline.config import Settings

# The longest files, longest first (seconds of one worker in `make test`, docs/benchmarks.md). pytest-randomly
# shuffles the files, and the two xdist workers take them in that order: a long file drawn last ran alone for
# minutes while the other worker idled (seed 2969564192: the ingestion DAG tests, 6 minutes, started last).
# Handing out the longest first, and the shuffled rest after, ends both workers close together. Each file's own
# tests stay shuffled.
LONGEST_FILES = [
    f"tests/integration/{name}.py"
    for name in (
        "test_demo",
        "test_ingest_dag",
        "test_fine_tune_dags",
        "test_triggers",
        "test_model_server",
        "test_cli_runs",
    )
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move the longest files' tests to the front, longest first; the rest keep their (shuffled) order."""
    rank = {path: index for index, path in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(LONGEST_FILES)))


@contextmanager
def environ(env: dict[str, str]) -> Iterator[None]:
    """Set environment variables for a block, then restore what was there (or remove them)."""
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def offline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The umbrella chart without its dependency list, for helm: the official charts cannot be fetched here."""
    from genai_pipeline.local.offline_chart import offline_chart

    return offline_chart(tmp_path_factory.mktemp("chart"))


@pytest.fixture(scope="session")
def weaviate_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A real weaviate-server for the session; yields the PIPELINE_* variables that reach it.

    QUERY_MAXIMUM_RESULTS is set low (the iterator pages by 100) so tests prove deletes page past it. The
    variables are set only while the server starts (it copies them): later tests see the environment they had.
    """
    from genai_pipeline.local.services import Services
    from genai_pipeline.local.weaviate_server import start_weaviate

    home = tmp_path_factory.mktemp("weaviate-home")
    env = {
        "PIPELINE_HOME": str(home),
        "PIPELINE_WEAVIATE__HTTP_PORT": str(free_port()),
        "PIPELINE_WEAVIATE__GRPC_PORT": str(free_port()),
    }
    services = Services(home)
    try:
        with environ({**env, "QUERY_MAXIMUM_RESULTS": "100"}):
            start_weaviate(Settings(), services)
        yield env
    finally:
        services.stop("weaviate")


@pytest.fixture
def settings_for(tmp_path: Path, weaviate_env: dict[str, str]):
    """Build Settings for a test: its own home and collection, the session's Weaviate."""

    def build(sources: dict[str, Path], **overrides: str) -> tuple[Settings, dict[str, str]]:
        env = {
            **weaviate_env,
            "PIPELINE_HOME": str(tmp_path / "home"),
            "PIPELINE_WEAVIATE__COLLECTION": f"Kb{abs(hash(tmp_path)) % 10**8}",
            "PIPELINE_INGEST__SOURCES": json.dumps({name: str(path) for name, path in sources.items()}),
            **overrides,
        }
        with environ(env):
            return Settings(), env

    return build


@pytest.fixture
def cluster_settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Kubernetes-mode settings as the chart renders them, plus a key that must never reach a pod spec."""
    monkeypatch.setenv("PIPELINE_RUNTIME__MODE", "kubernetes")
    monkeypatch.setenv("PIPELINE_STORE_URI", "/data/store")
    monkeypatch.setenv("PIPELINE_RUNTIME__SHARED_VOLUME_CLAIM", "pipeline-data")
    monkeypatch.setenv("PIPELINE_RUNTIME__IMAGE_REGISTRY", "registry.local/genai")
    monkeypatch.setenv("PIPELINE_RUNTIME__IMAGE_TAG", "1.2.3")
    monkeypatch.setenv("PIPELINE_RUNTIME__NAMESPACE", "pipeline-ns")
    monkeypatch.setenv("PIPELINE_RUNTIME__XCOM_SIDECAR_IMAGE", "registry.local/genai/xcom-sidecar:1.2.3")
    monkeypatch.setenv("PIPELINE_OPENAI__API_KEY", "sk-must-not-leak")
    return Settings()


# -- a webhook receiver (notifications are delivered for real, to a local HTTP server) ---------------------


@dataclass
class Received:
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Receiver:
    """What a webhook receiver got, and what it answers: ``statuses`` in turn, then ``default_status``."""

    url: str = ""
    statuses: list[int] = field(default_factory=list)
    default_status: int = 200
    delay: float = 0.0
    # A 429's Retry-After header, in seconds.
    retry_after: str = "0"
    requests: list[Received] = field(default_factory=list)


class _WebhookHandler(BaseHTTPRequestHandler):
    server: _WebhookServer

    def do_POST(self) -> None:
        rx = self.server.receiver
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        rx.requests.append(Received({k.lower(): v for k, v in self.headers.items()}, json.loads(body)))
        status = rx.statuses.pop(0) if rx.statuses else rx.default_status
        time.sleep(rx.delay)
        self.send_response(status)
        if status == 429:
            self.send_header("Retry-After", rx.retry_after)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _WebhookServer(ThreadingHTTPServer):
    daemon_threads = True
    receiver: Receiver

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (timeout test) leaves a broken pipe behind: expected


@contextmanager
def webhook_receiver(path: str = "/hooks/pipeline", **answers: Any) -> Iterator[Receiver]:
    """A receiver on a free port for the block; it records every POST and answers as told."""
    server = _WebhookServer(("127.0.0.1", free_port()), _WebhookHandler)
    server.receiver = Receiver(url=f"http://127.0.0.1:{server.server_port}{path}", **answers)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield server.receiver
    finally:
        server.shutdown()
        server.server_close()


NOTIFY_TOKEN = "whk-token-must-not-leak"
NOTIFY_PASSWORD = "smtp-password-must-not-leak"


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    """Start webhook receivers on free ports for a test; each is shut down after it."""
    with ExitStack() as stack:
        yield lambda path="/hooks/pipeline", **answers: stack.enter_context(webhook_receiver(path, **answers))


def notify_settings(
    monkeypatch: pytest.MonkeyPatch, url: str | None, token: str | None = NOTIFY_TOKEN, **notify_env: str
) -> Settings:
    """Settings read from PIPELINE_NOTIFY__* variables (webhook URL and token, then others), as a worker reads them."""
    for name, value in {"WEBHOOK_URL": url, "WEBHOOK_TOKEN": token, **notify_env}.items():
        if value is None:
            monkeypatch.delenv(f"PIPELINE_NOTIFY__{name}", raising=False)
        else:
            monkeypatch.setenv(f"PIPELINE_NOTIFY__{name}", value)
    return Settings()


@dataclass
class Mailbox:
    """What a local SMTP server received: each message parsed, and the logins it saw."""

    host: str
    port: int
    messages: list[EmailMessage] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)


@contextmanager
def smtp_receiver(**server_options: Any) -> Iterator[Mailbox]:
    """A real SMTP server (aiosmtpd) on a free port for the block; it keeps every message it accepts."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    mailbox = Mailbox("127.0.0.1", free_port())

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            mailbox.messages.append(BytesParser(policy=email.policy.default).parsebytes(envelope.content))
            return "250 OK"

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        mailbox.logins.append((auth_data.login.decode(), auth_data.password.decode()))
        return AuthResult(success=True)

    controller = Controller(
        Handler(),
        hostname=mailbox.host,
        port=mailbox.port,
        authenticator=authenticate,
        auth_require_tls=False,
        **server_options,
    )
    controller.start()
    try:
        yield mailbox
    finally:
        controller.stop()


def tls_authority(folder: Path) -> tuple[ssl.SSLContext, Path]:
    """A server-side TLS context for 127.0.0.1 from a throwaway CA, and that CA's file for clients to trust.

    Clients that build ``ssl.create_default_context()`` trust it through ``SSL_CERT_FILE``, as they would a
    company CA; without it, the server's certificate is one nobody trusts.
    """
    authority = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server)
    authority.cert_pem.write_to_path(str(folder / "ca.pem"))
    return server, folder / "ca.pem"


def isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> Settings:
    """Settings from these variables alone (none of the caller's PIPELINE_*): a home and store under tmp_path."""
    for name in list(os.environ):
        if name.startswith("PIPELINE_"):
            monkeypatch.delenv(name)
    defaults = {"PIPELINE_HOME": str(tmp_path / "home"), "PIPELINE_STORE_URI": str(tmp_path / "store")}
    for name, value in {**defaults, **env}.items():
        monkeypatch.setenv(name, value)
    return Settings()


def example_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> Settings:
    """Isolated settings whose train and validation example folders are under ``tmp_path/examples``."""
    folders = {
        "PIPELINE_FINE_TUNE__TRAIN_EXAMPLES": str(tmp_path / "examples" / "train"),
        "PIPELINE_FINE_TUNE__VALIDATION_EXAMPLES": str(tmp_path / "examples" / "validation"),
    }
    return isolated_settings(monkeypatch, tmp_path, **{**folders, **env})


def write_tree(root: Path, files: dict[str, str | bytes]) -> None:
    """Write files under root by relative path (text as UTF-8)."""
    for relpath, content in files.items():
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


# -- the model server on a tiny real chat model: chat and fine-tuning run for real, in a second or two ----------

TINY_CONTEXT = 256
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def random_chat_model(folder: Path, tokenizer: Any, *, hidden: int, layers: int, heads: int, **config: Any) -> Path:
    """Save a tokenizer and a random-weight Llama over its vocabulary: a real chat model, built in a second.

    The model server loads it from ``folder``; ``config`` holds further ``LlamaConfig`` fields.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer.save_pretrained(folder)
    llama = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **config,
    )
    LlamaForCausalLM(llama).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_chat_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-layer Llama with a byte-level tokenizer and a chat template, served as the base model ``tiny-chat``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {char: i for i, char in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|im_start|>", eos_token="<|im_end|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    folder = tmp_path_factory.mktemp("models") / "tiny-chat"
    return random_chat_model(folder, tokenizer, hidden=16, layers=1, heads=2, max_position_embeddings=TINY_CONTEXT)


@pytest.fixture
def tiny_context() -> int:
    """Tokens the tiny model attends over."""
    return TINY_CONTEXT


@pytest.fixture
def tiny_server(tmp_path: Path, tiny_chat_model: Path) -> Iterator[Callable[..., Any]]:
    """Build the model server app on the tiny model with some model-server settings; a TestClient for it."""
    from fastapi.testclient import TestClient

    from genai_pipeline.config import ModelServerSettings
    from genai_pipeline.model_server.app import create_app

    clients: list[TestClient] = []

    def make(**server: Any) -> TestClient:
        settings = Settings(home=tmp_path, model_server=ModelServerSettings(chat_model_dir=tiny_chat_model, **server))
        clients.append(TestClient(create_app(settings)))
        return clients[-1]

    yield make
    for client in clients:
        client.close()
