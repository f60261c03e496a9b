"""`python -m app.cli`: the `treadle` command."""

import sys

from app.cli import main

sys.exit(main())
