import sys

from xscan.cli import main

sys.exit(main())
