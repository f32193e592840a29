from __future__ import annotations

import sys

from freshtoken.cli import main

sys.exit(main())
