"""``python -m kryten_sync``: the kryten-sync command line (see :mod:`kryten_sync.tools.cli`)."""

import sys

from .tools.cli import main

if __name__ == "__main__":
    sys.exit(main())
