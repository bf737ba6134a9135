"""``python -m uptime_daemon``: the same as the ``uptime-daemon`` console script."""

import sys

from uptime_daemon.cli import main

sys.exit(main())
