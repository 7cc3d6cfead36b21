"""``python -m portlib`` is the ``portlib`` command."""

import sys

from portlib.cli import main

sys.exit(main())
