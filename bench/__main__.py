"""``uv run python -m bench [flags]``: the platform benchmark (see :mod:`bench.run`)."""

import sys

from bench.run import main

if __name__ == "__main__":
    sys.exit(main())
