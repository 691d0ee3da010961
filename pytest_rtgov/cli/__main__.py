"""``python -m pytest_rtgov.cli``: the ``rtgov`` command."""

import sys

from pytest_rtgov.cli.main import main

sys.exit(main())
