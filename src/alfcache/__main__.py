"""``python -m alfcache``: the command line."""

import sys

try:
    from alfcache._cli import main
except KeyboardInterrupt:  # a Ctrl-C before the command line can catch it is one line too
    message = "interrupted; no table was written, the previous tables are unchanged"
    print(f"alfcache: {message}", file=sys.stderr)
    raise SystemExit(130) from None

raise SystemExit(main())
