"""The command line's conventions, through the real entry point: ``--version``, help with
examples, global options anywhere, exit codes, ``NO_COLOR``, and read-only commands that create
nothing on a spec that was never run."""

from __future__ import annotations

import json
import os
import pty
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml

from moa_search.cli._common import color_enabled
from moa_search.cli.main import build_parser, main
from moa_search.search.session import SearchSession
from moa_search.testing import FakeOpenAIServer
from moa_search.testing.worlds import write_planted_study

COMMANDS = [
    "run",
    "local",
    "search",
    "export",
    "best",
    "serve",
    "archon",
    "winrate",
    "analyze",
    "report",
]
#: The installed console script, next to this interpreter.
SCRIPT = Path(sys.executable).with_name("moa-search")


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as srv:
        yield srv


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _examples(help_text: str) -> list[str]:
    """The command lines of a help's "examples:" block, continuations joined, comments cut."""
    block = help_text.split("examples:\n", 1)[1].split("\n\n", 1)[0]
    joined = re.sub(r"\\\n\s*", " ", block)
    return [line.split("  #", 1)[0].strip() for line in joined.splitlines() if line.strip()]


# --------------------------------------------------------------------- version and help


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_from_package_metadata(flag: str) -> None:
    assert SCRIPT.exists()
    done = subprocess.run([str(SCRIPT), flag], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"moa-search {version('moa-search')}\n"


def test_top_level_help_says_what_it_does_with_examples_and_exit_codes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    description = out.split("\n\n")[1]
    assert len(description.splitlines()) == 2 and "Mixture-of-Agents" in description
    commands = _examples(out)
    assert 3 <= len(commands) <= 4
    for line in ("0    success", "1    a run", "2    bad input", "130  interrupted"):
        assert line in out
    for command in COMMANDS:
        assert f"    {command} " in out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_examples_that_parse(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "exit codes:" in out and "130  interrupted" in out
    lines = _examples(out)
    assert len(lines) >= 2
    parser = build_parser()
    for line in lines:
        # 'VAR=x moa-search …', 'echo … | moa-search …', 'a && moa-search …': the moa-search part
        for part in re.split(r"\|\||&&|\|", line):
            words = shlex.split(part)
            if "moa-search" not in words:
                continue
            argv = words[words.index("moa-search") + 1 :]
            args = parser.parse_args(argv)  # a usage error would exit 2
            if argv[0] == command:
                assert args.command == command
    assert any(f"moa-search {command}" in line for line in lines)


def test_usage_error_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["best"]) == 2
    assert main(["no-such-command"]) == 2
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "--help" in err


# ------------------------------------------------------------------------- global options


@pytest.mark.parametrize(
    ("argv", "verbose"),
    [
        (["best", "s.yaml"], False),
        (["-v", "best", "s.yaml"], True),
        (["best", "s.yaml", "-v"], True),
        (["best", "--verbose", "s.yaml", "--json"], True),
        (["--verbose", "serve", "m.yaml"], True),
        (["serve", "m.yaml", "--port", "9", "-v"], True),
    ],
)
def test_verbose_before_or_after_the_command(argv: list[str], verbose: bool) -> None:
    assert build_parser().parse_args(argv).verbose is verbose


def test_verbose_after_the_command_runs_it(
    tmp_path: Path, server: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _spec(tmp_path, server)
    for argv in (["best", str(spec), "-v"], ["-v", "best", str(spec)], ["best", "-v", str(spec)]):
        assert main(argv) == 1  # not a usage error (2): the command ran and found no study
        assert "no study yet" in capsys.readouterr().err


# ------------------------------------------------------------------------------ exit codes


def _spec(tmp_path: Path, server: FakeOpenAIServer) -> Path:
    return write_planted_study(tmp_path, server.base_url, n_items=4)


@pytest.mark.parametrize(
    "argv",
    [
        ["best"],
        ["best", "--json"],
        ["analyze"],
        ["analyze", "--json"],
        ["report", "--out", "report.html"],
        ["best", "--storage", "sqlite:///never.db"],
    ],
)
def test_read_only_commands_on_a_spec_never_run_create_nothing(
    argv: list[str],
    tmp_path: Path,
    server: FakeOpenAIServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = _spec(tmp_path, server)
    monkeypatch.chdir(tmp_path)  # a relative --out or sqlite path lands here, if anywhere
    before = _files(tmp_path)
    code = main([argv[0], str(spec), *argv[1:]])
    out, err = capsys.readouterr()
    assert code == 1, err
    assert _files(tmp_path) == before  # no study.db, cache, embeddings, results folder, report
    if "--json" in argv:
        assert "no study yet" in json.loads(out)["error"] and err == ""
    else:
        assert f"no study yet: run 'moa-search search {spec}' first" in err
        assert err.count("\n") == 1 and out == ""


def test_a_storage_without_the_study_is_nothing_to_report(
    tmp_path: Path, server: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _spec(tmp_path, server)
    other = tmp_path / "other.db"
    session = SearchSession(spec, storage=f"sqlite:///{other}")
    try:
        session.study()
    finally:
        session.close()
    (tmp_path / "renamed.yaml").write_text(spec.read_text().replace("planted", "renamed", 1))
    code = main(["best", str(tmp_path / "renamed.yaml"), "--storage", f"sqlite:///{other}"])
    assert code == 1
    assert "holds no study named 'renamed'" in capsys.readouterr().err


def test_reading_a_study_stored_elsewhere_creates_nothing_beside_the_spec(
    tmp_path: Path, server: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _spec(tmp_path, server)
    (tmp_path / "elsewhere").mkdir()
    storage = f"sqlite:///{tmp_path / 'elsewhere' / 'study.db'}"
    session = SearchSession(spec, storage=storage)
    try:
        session.study()  # created in storage, no trial yet
    finally:
        session.close()
    shutil.rmtree(session.results)  # what searching it left beside the spec
    before = _files(tmp_path)
    assert main(["best", str(spec), "--storage", storage]) == 1
    assert main(["analyze", str(spec), "--storage", storage, "--json"]) == 1
    out = tmp_path / "report.html"
    assert main(["report", str(spec), "--storage", storage, "--out", str(out)]) == 0
    capsys.readouterr()
    assert _files(tmp_path) == before | {"report.html"}  # no results folder, cache, embeddings


def test_a_bad_storage_url_is_bad_input(
    tmp_path: Path, server: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _spec(tmp_path, server)
    before = _files(tmp_path)
    assert main(["best", str(spec), "--storage", "nosuchdb://x:pw@host/db"]) == 2
    err = capsys.readouterr().err
    assert "--storage" in err and "pw@" not in err and err.count("\n") == 1
    assert _files(tmp_path) == before


def test_best_on_an_empty_study_is_exit_1_with_and_without_json(
    tmp_path: Path, server: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _spec(tmp_path, server)
    session = SearchSession(spec)
    try:
        session.study()  # created in storage, no trial yet
    finally:
        session.close()
    assert main(["best", str(spec)]) == 1
    assert "no complete trials yet" in capsys.readouterr().out
    assert main(["best", str(spec), "--json"]) == 1
    assert json.loads(capsys.readouterr().out) == {"error": "no complete trials yet"}
    assert main(["analyze", str(spec), "--json"]) == 1
    assert "error" in json.loads(capsys.readouterr().out)


def _mixture_file(tmp_path: Path, server: FakeOpenAIServer) -> Path:
    data: dict[str, Any] = {
        "name": "one",
        "layers": [[{"model": "a"}]],
        "aggregator": {"model": "a"},
        "pool": {"models": [{"alias": "a", "base_url": server.base_url, "model": "a"}]},
    }
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


class _Interrupting:
    def read(self) -> str:
        raise KeyboardInterrupt


def test_interrupted_is_exit_130(
    tmp_path: Path,
    server: FakeOpenAIServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = _mixture_file(tmp_path, server)
    monkeypatch.setattr(sys, "stdin", _Interrupting())  # Ctrl-C while reading the prompt
    assert main(["run", str(path), "-", "--cache", "none"]) == 130
    assert capsys.readouterr().err == "moa-search: interrupted\n"


# -------------------------------------------------------------------------------- NO_COLOR


def test_color_only_on_a_terminal_and_never_with_no_color(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    master, slave = pty.openpty()
    with os.fdopen(slave, "w") as tty, open(os.devnull, "w") as file:
        monkeypatch.delenv("NO_COLOR", raising=False)
        monkeypatch.setenv("TERM", "xterm")
        assert color_enabled(tty) and not color_enabled(file)
        monkeypatch.setenv("NO_COLOR", "1")
        assert not color_enabled(tty)
        monkeypatch.setenv("NO_COLOR", "")  # set but empty: no effect (no-color.org)
        assert color_enabled(tty)
        monkeypatch.setenv("TERM", "dumb")
        assert not color_enabled(tty)
    os.close(master)


def _serve_log(mixture: Path, no_color: bool) -> str:
    """``moa-search serve`` with stdout on a terminal: its log up to "startup complete"."""
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM")}
    env["TERM"] = "xterm"
    if no_color:
        env["NO_COLOR"] = "1"
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [str(SCRIPT), "serve", str(mixture), "--port", "0"],
        stdout=slave,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    os.close(slave)
    assert proc.stderr is not None
    lines = []
    try:
        for line in proc.stderr:  # ends when the server is up, or when it has exited
            lines.append(line)
            if "startup complete" in line:
                break
        proc.send_signal(signal.SIGINT)
        lines.append(proc.stderr.read())
        assert proc.wait(timeout=60) == 0, "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
        os.close(master)
    log = "".join(lines)
    assert "startup complete" in log, log
    return log


def test_serve_log_has_no_color_with_no_color(tmp_path: Path, server: FakeOpenAIServer) -> None:
    mixture = _mixture_file(tmp_path, server)
    assert "\x1b[" in _serve_log(mixture, no_color=False)  # a terminal: coloured
    assert "\x1b[" not in _serve_log(mixture, no_color=True)


def test_serve_passes_allowed_hosts_to_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import moa_search.serve.app as serve_app

    seen: dict[str, Any] = {}
    monkeypatch.setattr(serve_app, "serve", lambda *a, **kw: seen.update(kw))
    with FakeOpenAIServer() as server:
        pool = {
            "version": 1,
            "models": [{"alias": "m", "base_url": server.base_url, "model": "m"}],
        }
        mixture = tmp_path / "m.yaml"
        mixture.write_text(
            yaml.safe_dump({"version": 1, "aggregator": {"model": "m"}, "pool": pool})
        )
        argv = ["serve", str(mixture), "--allow-host", "moa.example", "--allow-host", "other"]
        assert main(argv) == 0
    assert seen["allowed_hosts"] == ("moa.example", "other")
