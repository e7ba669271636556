"""`python -m fastload.scheduler`: run the reference scheduler."""
import sys

from fastload.scheduler.cli import main

sys.exit(main())
