"""neuralcodec: a learned image codec. ``compress(image, quality) -> bytes``, ``decompress(bytes) -> image``."""

__version__ = "0.4.0"
__all__ = ["compress", "decompress", "info", "DecodeError"]


def __getattr__(name):  # lazy: `import neuralcodec` must not pay for torch
    if name in __all__:
        from neuralcodec import api

        return getattr(api, name)
    raise AttributeError(name)
