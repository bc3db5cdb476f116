import sys

from common.cli.main import main

sys.exit(main())
