"""Every bad input gets one paragraph naming the file and the field, exit code 2, and no
traceback. One table, one test."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from moa_search.cli.main import main
from moa_search.testing import FakeOpenAIServer


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as srv:
        yield srv


def pool(url: str, **extra: Any) -> dict[str, Any]:
    return {"models": [{"alias": "a", "base_url": url, "model": "a", **extra}]}


def mixture(url: str, **extra: Any) -> dict[str, Any]:
    return {"layers": [[{"model": "a"}]], "aggregator": {"model": "a"}, "pool": pool(url), **extra}


def spec(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": "bad",
        "pool": pool(url),
        "dataset": "tasks.jsonl",
        "baseline": {"kind": "model", "model": "a"},
        "judge": {"kind": "exact_match"},
        **extra,
    }


GOOD_DATA = '{"prompt": "p", "reference": "r"}\n'
#: Enough prompts for the default held-out split, for the cases that get past the dataset.
TWO_PROMPTS = GOOD_DATA + '{"prompt": "q", "reference": "r"}\n'

# name -> (command, file name, file content (bytes, or a function of the server URL giving a
#          mapping), dataset bytes, extra flags, words the paragraph must contain)
Case = tuple[str, str, Any, bytes, list[str], list[str]]
CASES: dict[str, Case] = {
    "malformed yaml": (
        "run",
        "m.yaml",
        b"layers: [\n  - {",
        GOOD_DATA.encode(),
        [],
        ["valid YAML"],
    ),
    "malformed json": ("run", "m.json", b'{"layers": [}', b"", [], ["valid JSON"]),
    "empty file": ("run", "m.yaml", b"", b"", [], ["empty"]),
    "not a mapping": ("run", "m.yaml", b"- 1\n- 2\n", b"", [], ["mapping"]),
    "unknown alias": (
        "run",
        "m.yaml",
        lambda u: {**mixture(u), "layers": [[{"model": "zz"}]]},
        b"",
        [],
        ["layers[0][0].model", "'zz'"],
    ),
    "aggregator absent from pool": (
        "run",
        "m.yaml",
        lambda u: {**mixture(u), "aggregator": {"model": "zz"}},
        b"",
        [],
        ["aggregator.model"],
    ),
    "unreachable base_url": (
        "run",
        "m.yaml",
        lambda u: mixture("http://127.0.0.1:1/v1"),
        b"",
        [],
        ["pool.models[0].base_url", "127.0.0.1:1"],
    ),
    "missing api key variable": (
        "run",
        "m.yaml",
        lambda u: {**mixture(u), "pool": pool(u, api_key_env="MOA_NO_SUCH_KEY_VAR")},
        b"",
        [],
        ["pool.models[0].api_key_env", "MOA_NO_SUCH_KEY_VAR"],
    ),
    "empty dataset": ("search", "s.yaml", spec, b"", [], ["tasks.jsonl", "at least one"]),
    "non-utf8 dataset": ("search", "s.yaml", spec, b'{"prompt": "\xff"}\n', [], ["UTF-8"]),
    "line without prompt": (
        "search",
        "s.yaml",
        spec,
        GOOD_DATA.encode() + b'{"reference": "x"}\n',
        [],
        ["line 2.prompt"],
    ),
    "line not json": ("search", "s.yaml", spec, b"{nope\n", [], ["line 1", "JSON"]),
    "negative budget": (
        "search",
        "s.yaml",
        lambda u: spec(u, budget={"n_trials": -1}),
        GOOD_DATA.encode(),
        [],
        ["budget.n_trials"],
    ),
    "absurd budget": (
        "search",
        "s.yaml",
        lambda u: spec(u, budget={"max_usd": 1e15}),
        GOOD_DATA.encode(),
        [],
        ["budget.max_usd"],
    ),
    "bad flag value": (
        "search",
        "s.yaml",
        spec,
        GOOD_DATA.encode(),
        ["--n-trials", "0"],
        ["--n-trials"],
    ),
    "storage that cannot be opened": (
        "search",
        "s.yaml",
        spec,
        TWO_PROMPTS.encode(),
        ["--storage", "postgresql+psycopg://nobody:pw@127.0.0.1:1/none"],
        ["--storage", "127.0.0.1:1"],
    ),
    "cache that cannot be reached": (
        "search",
        "s.yaml",
        spec,
        TWO_PROMPTS.encode(),
        ["--cache", "redis://:pw@127.0.0.1:1/0"],
        ["--cache", "127.0.0.1:1"],
    ),
    "trial that is not a number": (
        "export",
        "s.yaml",
        spec,
        TWO_PROMPTS.encode(),
        ["--trial", "first", "--out", "never-written.yaml"],
        ["--trial", "'first'"],
    ),
    "unknown judge": (
        "search",
        "s.yaml",
        lambda u: spec(u, judge={"kind": "vibes"}),
        GOOD_DATA.encode(),
        [],
        ["judge.kind"],
    ),
    "spec not a mapping": ("search", "s.yaml", b"just text", GOOD_DATA.encode(), [], ["mapping"]),
    # read-only commands check the study exists before opening anything: bad input stays 2
    "best on a spec not a mapping": ("best", "s.yaml", b"just text", b"", [], ["mapping"]),
    "best on a storage that cannot be opened": (
        "best",
        "s.yaml",
        spec,
        TWO_PROMPTS.encode(),
        ["--storage", "postgresql+psycopg://nobody:pw@127.0.0.1:1/none"],
        ["--storage", "127.0.0.1:1"],
    ),
    "analyze on a storage that cannot be opened": (
        "analyze",
        "s.yaml",
        spec,
        TWO_PROMPTS.encode(),
        ["--storage", "postgresql+psycopg://nobody:pw@127.0.0.1:1/none", "--json"],
        ["--storage", "127.0.0.1:1"],
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(
    name: str, tmp_path: Path, server: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    command, filename, content, dataset, flags, words = CASES[name]
    path = tmp_path / filename
    if callable(content):
        data: Any = content(server.base_url)
        path.write_text(json.dumps(data) if filename.endswith(".json") else yaml.safe_dump(data))
    else:
        path.write_bytes(content)
    (tmp_path / "tasks.jsonl").write_bytes(dataset)
    argv = [command, str(path), *flags]
    if command == "run":
        argv.append("a prompt")
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert err.count("\n") == 1, err  # one paragraph
    for word in words:
        assert word in err, err
    if not {"--storage", "--n-trials", "--cache", "--trial"} & set(flags):
        assert str(tmp_path) in err  # it names the file (else the flag)
    assert "pw@" not in err  # a storage password is never echoed
