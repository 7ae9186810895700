"""The shape of the package, kept true: small modules, and one reader/writer of trial records.

The layering rule itself (every import points down) is checked by import-linter in CI
(``lint-imports``, contracts in pyproject.toml); these are the rules it cannot express.
"""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "moa_search"
MAX_LINES = 500


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_module_is_over_500_lines() -> None:
    sizes = {str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in _modules()}
    assert len(sizes) > 50
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_only_the_records_module_touches_trial_attributes() -> None:
    pattern = re.compile(r"\b(user_attrs|set_user_attr)\b")
    touching = {str(p.relative_to(PACKAGE)) for p in _modules() if pattern.search(p.read_text())}
    assert touching == {"search/records.py"}


def test_every_package_declares_its_public_names() -> None:
    missing = [
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("__init__.py")
        if "__all__" not in p.read_text() and p.read_text().count("import") > 0
    ]
    assert missing == []
    assert (PACKAGE / "py.typed").is_file()
