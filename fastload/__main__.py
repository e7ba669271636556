"""`python -m fastload`: the load generator."""
import sys

from fastload.cli import main

sys.exit(main())
