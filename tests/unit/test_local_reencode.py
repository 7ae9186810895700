"""SmolLM2's shipped Q4_1 weights are served re-encoded as Q8_0, made once per user, with a
fallback to the shipped file that says why."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from moa_search.local import models, reencode

pytest.importorskip("llama_cpp")


def _file_type(path: Path) -> str:
    """``general.file_type`` from the GGUF metadata, read by llama.cpp itself."""
    from llama_cpp import Llama

    llm = Llama(str(path), vocab_only=True, verbose=False)
    try:
        return str(llm.metadata["general.file_type"])
    finally:
        llm.close()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(reencode.REENCODE_ENV, raising=False)
    return tmp_path / "xdg" / "moa-search" / "models"


def test_smollm2_is_served_as_q8_0_made_once(cache: Path) -> None:
    shipped = models._smollm2_path()
    assert _file_type(shipped) == "3"  # LLAMA_FTYPE_MOSTLY_Q4_1

    served = next(m for m in models.local_models() if m.alias == "smollm2").gguf_path
    assert served.parent == cache
    assert served.name.endswith(".Q8_0.gguf")
    assert _file_type(served) == "7"  # LLAMA_FTYPE_MOSTLY_Q8_0
    assert [p.name for p in cache.iterdir()] == [served.name]  # no temporary file left

    before = served.stat().st_mtime_ns
    assert reencode.reencoded(shipped) == served  # the second use reuses the file
    assert served.stat().st_mtime_ns == before


def test_reencoding_off_serves_the_shipped_file(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(reencode.REENCODE_ENV, "0")
    shipped = models._smollm2_path()
    assert reencode.reencoded(shipped) == shipped
    assert not cache.exists()


def test_a_failed_reencoding_serves_the_source_and_says_why(
    cache: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = tmp_path / "broken.Q4_1.gguf"
    broken.write_bytes(b"not a gguf file")
    with caplog.at_level(logging.WARNING, logger=reencode.__name__):
        assert reencode.reencoded(broken) == broken
    assert f"serving {broken} unchanged: re-encoding it as Q8_0 failed (exit" in caplog.text
    assert list(cache.iterdir()) == []  # the temporary file is removed
