"""Moved: the benchmark is now ``python -m bench`` (see bench/__init__.py and BENCHMARKS.md).

``python -m tests.benchmark [args]`` still works and runs ``python -m bench [args]``.
"""

from __future__ import annotations

import sys

from bench.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
