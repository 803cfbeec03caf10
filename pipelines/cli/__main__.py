"""`python -m flowline.pipelines.cli ...`: the `flowline` command, for processes that start it with an interpreter."""

import sys

from flowline.pipelines.cli import main

sys.exit(main())
