"""``python -m milo_pack.bench``: see :mod:`milo_pack.bench.cli`."""

from milo_pack.bench.cli import main

raise SystemExit(main())
