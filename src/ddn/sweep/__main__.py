"""``python -m ddn.sweep --worker JSON``: one run's process (see :mod:`ddn.sweep.worker`)."""

import sys

from ddn.sweep.worker import main

raise SystemExit(main(sys.argv[1:]))
