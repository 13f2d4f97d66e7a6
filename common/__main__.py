"""Entry point of ``python -m common``."""

from __future__ import annotations

import sys

from common.cli import main

sys.exit(main())
