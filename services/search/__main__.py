"""`python -m synesthesia.services.search`: the search service (env: SYNESTHESIA_*)."""

import sys

from synesthesia.services.search.app import cli_main

sys.exit(cli_main(sys.argv[1:]))
