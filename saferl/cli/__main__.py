"""``python -m saferl.cli``: the ``saferl`` command."""

import sys

from saferl.cli import main

sys.exit(main())
