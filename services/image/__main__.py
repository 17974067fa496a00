"""`python -m synesthesia.services.image`: the image encoder service (env: SYNESTHESIA_*)."""

from synesthesia.modality import Modality
from synesthesia.services.encoder.app import main

main(Modality.IMAGE)
