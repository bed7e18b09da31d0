"""`python -m gotr1 ...` is the `gotr1` command (handy under `accelerate launch -m gotr1 ...`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
