"""`python -m pixelwise` runs the command line."""

import sys

from pixelwise.cli import main

sys.exit(main())
