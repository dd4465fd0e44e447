"""``python -m warp_cache``: the operator CLI for shared caches (see `warp_cache._cli`)."""

import sys

from warp_cache._cli import main

sys.exit(main())
