"""``python -m moa_search.cli``: the ``moa-search`` command."""

from __future__ import annotations

import sys

from moa_search.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
