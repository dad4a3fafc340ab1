"""`python -m launcher` is the `tokenservice` command (how `serve --workers N` starts its
workers)."""

import sys

from launcher.cli import main

sys.exit(main())
