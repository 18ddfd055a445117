"""``python -m mediagen``: the same as the ``mediagen`` command."""

import sys

from mediagen.cli import main

if __name__ == "__main__":
    sys.exit(main())
