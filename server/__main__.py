"""`python -m server` is the `tokenservice` command."""

import sys

from server.cli import main

sys.exit(main())
