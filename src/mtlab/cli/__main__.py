"""``python -m mtlab.cli`` is the ``mtlab`` command."""

import sys

from mtlab.cli import main

sys.exit(main())
