"""Errors raised while building or loading towers."""

from tandemrec.errors import TandemrecError


class EncoderLoadError(TandemrecError, RuntimeError):
    """Pretrained weights or a model config could not be had; the message says what was tried."""
