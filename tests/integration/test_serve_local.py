"""Serving the example mixture on the real local llama.cpp pool, through the openai client."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from moa_search import local
from moa_search.serve.app import app_from_files, running

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "studies" / "local" / "mixture.yaml"


@pytest.mark.local
def test_serving_the_example_mixture_on_the_local_pool(local_pool: local.LocalStatus) -> None:
    app = app_from_files([EXAMPLE], pool=local_pool.pool_path)
    with running(app) as url:
        c = openai.OpenAI(base_url=url, api_key="x", max_retries=0, timeout=600)
        assert [m.id for m in c.models.list().data] == ["local-example"]
        resp = c.chat.completions.create(
            model="local-example", messages=[{"role": "user", "content": "Name a red fruit."}]
        )
        assert resp.choices[0].message.content and resp.choices[0].message.content.strip()
        assert resp.usage is not None and resp.usage.completion_tokens > 0
        chunks = list(
            c.chat.completions.create(
                model="local-example",
                messages=[{"role": "user", "content": "Name a green vegetable."}],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text.strip()
    assert sum(1 for ch in chunks if ch.choices and ch.choices[0].delta.content) > 1
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens > 0
