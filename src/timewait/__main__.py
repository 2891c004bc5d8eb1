import sys

from timewait.cli import main

sys.exit(main())
