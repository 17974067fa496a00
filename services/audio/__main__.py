"""`python -m synesthesia.services.audio`: the audio encoder service (env: SYNESTHESIA_*)."""

from synesthesia.modality import Modality
from synesthesia.services.encoder.app import main

main(Modality.AUDIO)
