"""A lean encoder for sentence-transformers folders that are a BERT model with mean pooling and
normalisation (all-MiniLM-L6-v2, the default embedding model, is one).

Importing sentence-transformers costs about 8 s of CPU per process (it pulls in transformers,
scikit-learn and scipy); every ``moa-search`` process that scores diversity, and every search
worker, paid it. This encoder computes the same vectors from the same files with only torch,
``tokenizers`` and ``safetensors`` (about 1.5 s to import): the folder's ``tokenizer.json``,
its ``model.safetensors`` weights and BERT's forward pass written with
:mod:`torch.nn.functional`. ``tests/unit/test_diversity.py`` checks it against
sentence-transformers on the same texts.

:meth:`BertMeanEncoder.from_folder` returns ``None`` for any folder it does not describe
exactly (another architecture, pooling or module list), and :class:`~moa_search.runtime.
embeddings.Embedder` then loads the folder with sentence-transformers as before.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["BertMeanEncoder"]

_MODULES = [
    "sentence_transformers.models.Transformer",
    "sentence_transformers.models.Pooling",
    "sentence_transformers.models.Normalize",
]


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class _Settings:
    """What the forward pass needs from the folder's configuration files."""

    max_seq_length: int
    lower: bool
    heads: int
    layers: int
    eps: float
    dim: int


def _describes(folder: Path) -> _Settings | None:
    """The settings of a BERT + mean pooling + normalise folder, or None if it is not one."""
    try:
        modules = _read_json(folder / "modules.json")
        config = _read_json(folder / "config.json")
        st_config = _read_json(folder / "sentence_bert_config.json")
        pooling_dir = next(m["path"] for m in modules if m["type"].endswith(".Pooling"))
        pooling = _read_json(folder / pooling_dir / "config.json")
    except (OSError, ValueError, KeyError, StopIteration, TypeError):
        return None
    modes = {k: v for k, v in pooling.items() if k.startswith("pooling_mode")}
    if (
        [m.get("type") for m in modules] != _MODULES
        or modules[0].get("path") != ""
        or config.get("architectures") != ["BertModel"]
        or config.get("hidden_act") != "gelu"
        or config.get("position_embedding_type", "absolute") != "absolute"
        or [k for k, v in modes.items() if v] != ["pooling_mode_mean_tokens"]
        or not (folder / "tokenizer.json").is_file()
        or not (folder / "model.safetensors").is_file()
    ):
        return None
    max_len = min(
        int(st_config.get("max_seq_length") or 512), int(config["max_position_embeddings"])
    )
    return _Settings(
        max_seq_length=max_len,
        lower=bool(st_config.get("do_lower_case", False)),
        heads=int(config["num_attention_heads"]),
        layers=int(config["num_hidden_layers"]),
        eps=float(config["layer_norm_eps"]),
        dim=int(config["hidden_size"]),
    )


class BertMeanEncoder:
    """BERT, mean pooling over the attention mask, L2 normalisation: what sentence-transformers
    computes for such a folder, texts stripped (and lower-cased if the folder says so) and
    truncated to its ``max_seq_length`` as sentence-transformers does."""

    def __init__(self, folder: Path, settings: _Settings) -> None:
        import torch
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        self.folder = folder
        self.dimension = settings.dim
        self._s = settings
        self._w: dict[str, torch.Tensor] = load_file(str(folder / "model.safetensors"))
        self._tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tok.enable_truncation(max_length=settings.max_seq_length)
        self._tok.no_padding()
        self._torch = torch

    @classmethod
    def from_folder(cls, folder: str | Path) -> BertMeanEncoder | None:
        """The encoder for ``folder``, or None when the folder is not exactly such a model (or
        torch, tokenizers or safetensors is missing)."""
        folder = Path(folder)
        settings = _describes(folder)
        if settings is None:
            return None
        try:
            return cls(folder, settings)
        except ImportError:
            return None

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """Normalised float32 vectors, one row per text, in order (batched by length)."""
        prepared = [t.strip() for t in texts]
        if self._s.lower:
            prepared = [t.lower() for t in prepared]
        encodings = self._tok.encode_batch(prepared)
        order = sorted(range(len(prepared)), key=lambda i: -len(encodings[i].ids))
        out = np.zeros((len(prepared), self.dimension), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            out[chunk] = self._forward([encodings[i].ids for i in chunk])
        return out

    def _forward(self, ids_list: list[list[int]]) -> np.ndarray:
        th = self._torch
        fn = th.nn.functional
        w, s = self._w, self._s
        width = max(len(ids) for ids in ids_list)
        ids = th.zeros((len(ids_list), width), dtype=th.long)
        mask = th.zeros((len(ids_list), width), dtype=th.bool)
        for row, seq in enumerate(ids_list):
            ids[row, : len(seq)] = th.tensor(seq, dtype=th.long)
            mask[row, : len(seq)] = True
        dim, heads, eps = s.dim, s.heads, s.eps
        with th.inference_mode():
            h = (
                fn.embedding(ids, w["embeddings.word_embeddings.weight"])
                + w["embeddings.position_embeddings.weight"][:width]
                + w["embeddings.token_type_embeddings.weight"][0]
            )
            h = self._norm(h, "embeddings.LayerNorm", eps)
            attn_mask = mask[:, None, None, :]
            batch = h.shape[0]

            def split(x: torch.Tensor) -> torch.Tensor:  # (batch, width, dim) -> per head
                return x.view(batch, width, heads, dim // heads).transpose(1, 2)

            for i in range(s.layers):
                p = f"encoder.layer.{i}."
                q = split(self._linear(h, p + "attention.self.query"))
                k = split(self._linear(h, p + "attention.self.key"))
                v = split(self._linear(h, p + "attention.self.value"))
                ctx = fn.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
                ctx = ctx.transpose(1, 2).reshape(batch, width, dim)
                h = self._norm(
                    self._linear(ctx, p + "attention.output.dense") + h,
                    p + "attention.output.LayerNorm",
                    eps,
                )
                inner = fn.gelu(self._linear(h, p + "intermediate.dense"))
                h = self._norm(
                    self._linear(inner, p + "output.dense") + h, p + "output.LayerNorm", eps
                )
            weights = mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            pooled = fn.normalize(pooled, p=2, dim=1)
        return np.asarray(pooled.numpy(), dtype=np.float32)

    def _linear(self, x: torch.Tensor, name: str) -> torch.Tensor:
        w = self._w
        return self._torch.nn.functional.linear(x, w[name + ".weight"], w[name + ".bias"])

    def _norm(self, x: torch.Tensor, name: str, eps: float) -> torch.Tensor:
        w = self._w
        return self._torch.nn.functional.layer_norm(
            x, (x.shape[-1],), w[name + ".weight"], w[name + ".bias"], eps
        )
