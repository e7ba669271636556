"""`python -m fastload.scheduler`: the reference scheduler (``fastload.commands.scheduler``)."""
import sys

from fastload.commands.scheduler import main

sys.exit(main())
