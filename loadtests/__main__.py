"""Entry point: `python -m loadtests --profile smoke`."""

from __future__ import annotations

import sys

from loadtests.runner import main

sys.exit(main())
