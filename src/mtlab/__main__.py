"""``python -m mtlab`` is the ``mtlab`` command."""

import sys

from mtlab.cli import main

sys.exit(main())
