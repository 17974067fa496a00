"""Decoding of user media into arrays, with one documented policy per modality."""

from synesthesia.media.audio import decode_audio, decode_audio_channels
from synesthesia.media.image import decode_image
from synesthesia.media.text import validate_text

__all__ = ["decode_audio", "decode_audio_channels", "decode_image", "validate_text"]
