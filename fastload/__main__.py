"""`python -m fastload`: the load generator (``fastload.commands.run``)."""
import sys

from fastload.commands.run import main

if __name__ == "__main__":
    sys.exit(main())
