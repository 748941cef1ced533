import sys

from arvid.cli.main import main

sys.exit(main())
