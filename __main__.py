"""`python -m gaussiantoken COMMAND ...`: the same as the `gaussiantoken` command."""

import sys

from gaussiantoken.pipelines.cli import main

sys.exit(main())
