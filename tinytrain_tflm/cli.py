"""`python -m tinytrain_tflm.cli` and the tinytrain-tflm script: the command line lives in tools/cli.py."""

import sys

from .tools.cli import main

if __name__ == "__main__":
    sys.exit(main())
