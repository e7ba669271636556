"""`python -m fastload`: the load generator."""
import sys

from fastload.cli import main

if __name__ == "__main__":
    sys.exit(main())
