"""``python -m milo_pack``: the ``milo-pack`` command.

``python -m milo_pack.bench`` is a separate program (the benchmark package's own ``__main__``).
"""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
