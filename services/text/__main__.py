"""`python -m synesthesia.services.text`: the text encoder service (settings: SYNESTHESIA_* env)."""

from synesthesia.modality import Modality
from synesthesia.services.encoder.app import main

main(Modality.TEXT)
