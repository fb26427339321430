"""``python -m hybrid serve ...``: the same as the ``hybrid`` console script."""

import sys

from hybrid.cli import main

if __name__ == "__main__":
    sys.exit(main())
