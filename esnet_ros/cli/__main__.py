"""``python -m esnet_ros.cli``: the ``esnet`` command without the installed entry point (torchrun uses it)."""

import sys

from esnet_ros.cli import main

sys.exit(main())
