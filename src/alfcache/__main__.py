"""``python -m alfcache``: the command line."""

from alfcache._cli import main

raise SystemExit(main())
