"""More bad input, each row through the command line: one paragraph naming the file (or the
flag or variable) and what was expected, exit code 2, never a traceback — and never a hang, a
gigabyte of memory, a stray temporary file, or a key echoed back.

Rows: YAML and JSON nested 1,000 deep; a billion-laughs YAML and an alias that contains itself;
a FIFO or a folder given as a mixture, spec or dataset; ``--out`` at a folder, below a file,
somewhere unwritable, and beside a ``.tmp`` an interrupted write left; ``winrate`` on empty,
all-null, 400-digit, one-sided and mismatched annotations; non-UTF-8 on stdin for ``run``;
``MOA_SEARCH_HOME`` at a file; a key pasted where ``api_key_env`` wants a variable's name.
"""

from __future__ import annotations

import io
import json
import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from moa_search.cli.main import main
from moa_search.testing import FakeOpenAIServer
from moa_search.testing.worlds import PlantedWorld, write_planted_study


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as srv:
        yield srv


def _mixture(url: str, **model: Any) -> dict[str, Any]:
    return {
        "layers": [[{"model": "a"}]],
        "aggregator": {"model": "a"},
        "pool": {"models": [{"alias": "a", "base_url": url, "model": "a", **model}]},
    }


def _spec(url: str) -> dict[str, Any]:
    return {
        "name": "bad",
        "pool": _mixture(url)["pool"],
        "dataset": "tasks.jsonl",
        "baseline": {"kind": "model", "model": "a"},
        "judge": {"kind": "exact_match"},
    }


def _check(code: int, err: str, words: list[str], absent: tuple[str, ...] = ()) -> None:
    assert code == 2, err
    assert "Traceback" not in err, err
    assert err.count("\n") == 1, err  # one paragraph
    for word in words:
        assert word in err, err
    for word in absent:
        assert word not in err, err


DEEP = "a: " + "[" * 1000 + "]" * 1000 + "\n"
LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)
)
KEY = "gsk_" + "Zq3xV9bT2mK8pL4nR7wY1cF6hJ0dS5gA"  # looks like a Groq key
OPAQUE = "q8Z2xT4mV7bN1kL9pR3wY6cF0hJ5dS2g"  # no prefix: long, mixed case and digits

# name -> (file name, content: bytes or a function of the server URL giving a mapping,
#          words the paragraph must contain)
FILE_CASES: dict[str, tuple[str, Any, list[str]]] = {
    "yaml nested 1000 deep": ("m.yaml", DEEP.encode(), ["nest at most 64 levels"]),
    "json nested 1000 deep": (
        "m.json",
        ('{"a": ' + "[" * 1000 + "]" * 1000 + "}").encode(),
        ["nest at most 64 levels"],
    ),
    "json nested 100000 deep": (
        "m.json",
        ('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}").encode(),
        ["nest at most 64 levels"],
    ),
    "billion laughs": ("m.yaml", LAUGHS.encode(), ["aliases expanded", "billion laughs"]),
    "alias containing itself": ("m.yaml", b"layers: &x [*x]\n", ["contains itself"]),
    "integer of 5000 digits": ("m.json", b'{"quorum": ' + b"9" * 5000 + b"}", ["valid JSON"]),
    "key pasted as api_key_env": (
        "m.yaml",
        lambda u: _mixture(u, api_key_env=KEY),
        ["pool.models[0].api_key_env", "NAME of an environment variable"],
    ),
    "opaque key pasted as api_key_env": (
        "m.yaml",
        lambda u: _mixture(u, api_key_env=OPAQUE),
        ["pool.models[0].api_key_env", "never the key itself"],
    ),
}


@pytest.mark.parametrize("name", list(FILE_CASES))
def test_bad_mixture_file(
    name: str, tmp_path: Path, server: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    filename, content, words = FILE_CASES[name]
    path = tmp_path / filename
    if callable(content):
        path.write_text(yaml.safe_dump(content(server.base_url)))
    else:
        path.write_bytes(content)
    code = main(["run", str(path), "a prompt"])
    err = capsys.readouterr().err
    _check(code, err, [str(path), *words], absent=(KEY, KEY[4:], OPAQUE))


def _main(argv: list[str], timeout_s: float = 120) -> int:
    """``main(argv)`` on a helper thread: a command that hangs (reading a FIFO) fails the test
    instead of blocking it."""
    result: list[int] = []
    worker = threading.Thread(target=lambda: result.append(main(argv)), daemon=True)
    worker.start()
    worker.join(timeout_s)
    assert result, f"moa-search {' '.join(argv)} did not return (hung?)"
    return result[0]


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


# name -> (set-up in tmp_path returning the argv, words)
Setup = Callable[[Path, str], list[str]]
PATH_CASES: dict[str, tuple[Setup, list[str]]] = {
    "fifo as mixture": (
        lambda d, u: ["run", str(_fifo(d / "m.yaml")), "hi"],
        ["m.yaml", "regular file", "FIFO"],
    ),
    "folder as mixture": (
        lambda d, u: ["run", str(d), "hi"],
        ["directory"],
    ),
    "fifo as spec": (
        lambda d, u: ["search", str(_fifo(d / "s.yaml"))],
        ["s.yaml", "FIFO"],
    ),
    "fifo as dataset": (
        lambda d, u: [
            "search",
            str(_write(d / "s.yaml", yaml.safe_dump(_spec(u)), _fifo(d / "tasks.jsonl"))),
        ],
        ["tasks.jsonl", "FIFO"],
    ),
    "folder as dataset": (
        lambda d, u: [
            "search",
            str(_write(d / "s.yaml", yaml.safe_dump(_spec(u)), _mkdir(d / "tasks.jsonl"))),
        ],
        ["tasks.jsonl", "directory"],
    ),
    "dataset line nested 100000 deep": (
        lambda d, u: [
            "search",
            str(
                _write(
                    d / "s.yaml",
                    yaml.safe_dump(_spec(u)),
                    _write(
                        d / "tasks.jsonl",
                        '{"prompt": "p", "x": ' + "[" * 100_000 + "]" * 100_000 + "}\n",
                    ),
                )
            ),
        ],
        ["tasks.jsonl", "line 1", "nested"],
    ),
}


def _write(path: Path, text: str, *_: object) -> Path:
    path.write_text(text)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


@pytest.mark.parametrize("name", list(PATH_CASES))
def test_bad_path(
    name: str,
    tmp_path: Path,
    server: FakeOpenAIServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    setup, words = PATH_CASES[name]
    monkeypatch.setenv("MOA_SEARCH_HOME", str(tmp_path / "home"))
    argv = setup(tmp_path, server.base_url)
    code = _main(argv)
    _check(code, capsys.readouterr().err, [*words, str(tmp_path)])


def test_non_utf8_prompt_on_stdin(
    tmp_path: Path,
    server: FakeOpenAIServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = _write(tmp_path / "m.yaml", yaml.safe_dump(_mixture(server.base_url)))
    stdin = io.TextIOWrapper(io.BytesIO(b"What is \xff\xfe the answer?"), encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", stdin)
    n_before = server.count()
    code = main(["run", str(path), "-", "--cache", "none"])
    _check(code, capsys.readouterr().err, ["standard input", "UTF-8", "offset 8"])
    assert server.count() == n_before  # nothing was asked


@pytest.mark.parametrize("below", [False, True])
def test_moa_search_home_at_a_file(
    below: bool,
    tmp_path: Path,
    server: FakeOpenAIServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = _write(tmp_path / "home", "not a folder")
    mixture = {k: v for k, v in _mixture(server.base_url).items() if k != "pool"}
    path = _write(tmp_path / "m.yaml", yaml.safe_dump(mixture))  # uses the local pool
    monkeypatch.setenv("MOA_SEARCH_HOME", str(home / "sub" if below else home))
    code = main(["run", str(path), "hi"])
    _check(code, capsys.readouterr().err, ["MOA_SEARCH_HOME", "is a file, not a folder"])


# ------------------------------------------------------------------- --out


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A small study, searched, to export."""
    world = PlantedWorld(skill={"s": 0.8, "w": 0.3}, aggregation_skill={"s": 0.5, "w": 0.0})
    folder = tmp_path_factory.mktemp("searched")
    with FakeOpenAIServer(world.behaviors()) as srv:
        spec = write_planted_study(
            folder,
            srv.base_url,
            n_items=4,
            models=("s", "w"),
            evaluation={"rungs": [4], "holdout": 0},
            space={"max_layers": 1, "max_samples": 1, "max_proposers": 2},
            budget={"n_trials": 2},
        )
        assert main(["search", str(spec)]) == 0
        yield spec


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.tmp"))


OUT_CASES: dict[str, tuple[Callable[[Path], Path], list[str]]] = {
    "out at a folder": (lambda d: _mkdir(d / "out.yaml"), ["out.yaml", "directory"]),
    "out below a file": (
        lambda d: _write(d / "afile", "x") / "out.yaml",
        ["afile", "folder that can be written"],
    ),
    "out somewhere unwritable": (lambda d: Path("/proc/moa-search-out.yaml"), ["/proc"]),
}


@pytest.mark.parametrize("name", list(OUT_CASES))
def test_bad_out(
    name: str, searched: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make, words = OUT_CASES[name]
    out = make(tmp_path)
    capsys.readouterr()
    code = main(["export", str(searched), "--out", str(out)])
    _check(code, capsys.readouterr().err, words)
    assert _leftovers(tmp_path) == []


def test_out_beside_a_leftover_tmp(
    searched: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An earlier write killed half-way left 'out.yaml.tmp' (here a folder, so that reusing its
    name would fail): the export is not hindered, and leaves no temporary file of its own."""
    (tmp_path / "out.yaml.tmp").mkdir()
    out = tmp_path / "out.yaml"
    assert main(["export", str(searched), "--out", str(out)]) == 0, capsys.readouterr().err
    assert yaml.safe_load(out.read_text())["layers"]
    assert _leftovers(tmp_path) == ["out.yaml.tmp"]  # only the old one


# ------------------------------------------------------------------- winrate


def _annotation(instruction: str, preference: Any, **drop: bool) -> dict[str, Any]:
    record = {
        "instruction": instruction,
        "output_1": "reference answer",
        "generator_1": "gpt4_1106_preview",
        "output_2": "model answer",
        "generator_2": "m",
        "preference": preference,
    }
    return {k: v for k, v in record.items() if not drop.get(k)}


def _results(folder: Path, models: dict[str, bytes]) -> Path:
    for model, data in models.items():
        d = folder / "results" / model / "weighted_alpaca_eval_gpt4_turbo"
        d.mkdir(parents=True)
        (d / "annotations.json").write_bytes(data)
    return folder


def _json(records: list[dict[str, Any]]) -> bytes:
    return json.dumps(records).encode()


WINRATE_CASES: dict[str, tuple[dict[str, bytes], list[str]]] = {
    "empty file": ({"m": b""}, ["annotations.json", "JSON"]),
    "empty list": ({"m": b"[]"}, ["annotations.json", "preference", "an empty list"]),
    "all null": (
        {"m": _json([_annotation("q1", None), _annotation("q2", None)])},
        ["preference", "none of 2"],
    ),
    "400-digit preference": (
        {
            "m": b'[{"instruction": "q", "output_1": "a", "output_2": "b", "generator_2": "m", '
            b'"preference": ' + b"1" * 400 + b"}]"
        },
        ["[0].preference", "a number in [1, 2]"],
    ),
    "one side missing": (
        {"m": _json([_annotation("q1", 1.7, output_2=True)])},
        ["[0].output_2"],
    ),
}


@pytest.mark.parametrize("name", list(WINRATE_CASES))
def test_bad_winrate_input(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    models, words = WINRATE_CASES[name]
    folder = _results(tmp_path, models)
    code = main(["winrate", str(folder)])
    _check(code, capsys.readouterr().err, words)


def test_winrate_on_a_file_instead_of_a_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path / "results", "x")
    _check(main(["winrate", str(path)]), capsys.readouterr().err, ["a folder of AlpacaEval"])


def test_winrate_on_mismatched_instructions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """m1 was annotated on an instruction ('qX') that no model's annotations judge: length
    control has no difficulty for it."""

    def ann(instruction: str, preference: float | None, model: str, length: int) -> dict[str, Any]:
        return {
            **_annotation(instruction, preference),
            "generator_2": model,
            "output_2": "o" * length,
        }

    folder = _results(
        tmp_path,
        {
            "m1": _json(
                [ann("q1", 1.8, "m1", 5), ann("q2", 1.3, "m1", 30), ann("qX", None, "m1", 9)]
            ),
            "m2": _json([ann("q1", 1.6, "m2", 12), ann("q2", 1.2, "m2", 8)]),
        },
    )
    weights = _write(
        tmp_path / "w.csv",
        ",np.tanh(std_delta_len),instruction_difficulty,not_gamed_baseline.astype(float)\n"
        "m1,-0.5,0.8,0.2\nm2,-0.3,0.6,-0.1\n",
    )
    code = main(["winrate", str(folder), "--weights", str(weights)])
    _check(code, capsys.readouterr().err, ["m1", "field 'instruction'", "'qX'"])


def test_winrate_weights_at_a_fifo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _results(tmp_path, {"m": _json([_annotation("q1", 1.7)])})
    fifo = _fifo(tmp_path / "w.csv")
    code = _main(["winrate", str(folder), "--weights", str(fifo)])
    _check(code, capsys.readouterr().err, [str(fifo), "FIFO"])
