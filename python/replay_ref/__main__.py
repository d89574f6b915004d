"""python3 -m replay_ref: see cli.py."""

import sys

from .cli import main

sys.exit(main())
