"""``python -m mnadlib``: see :mod:`mnadlib.cli`."""

import sys

from .cli import main

sys.exit(main())
