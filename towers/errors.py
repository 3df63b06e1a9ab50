"""Errors raised while building or loading towers."""


class EncoderLoadError(RuntimeError):
    """Pretrained weights or a model config could not be had; the message says what was tried."""
