"""Training and evaluation of the ``synesthesia-minilm`` image/audio towers.

Never imported by the services: serving needs only ``synesthesia.models``.
"""
