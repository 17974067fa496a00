"""Export of the encoder towers for other runtimes (``synesthesia export onnx``)."""
