"""neuralcodec: a learned image codec. ``compress(image, quality) -> bytes``, ``decompress(bytes) -> image``."""

__version__ = "0.8.0"
__all__ = ["compress", "decompress", "info", "EncodeSettings", "DecodeSettings", "DecodeError", "NeuralcodecError"]


def __getattr__(name):  # lazy: `import neuralcodec` must not pay for torch
    if name == "NeuralcodecError":  # the base of every error the library raises on purpose
        from neuralcodec.errors import NeuralcodecError

        return NeuralcodecError
    if name in ("EncodeSettings", "DecodeSettings"):
        from neuralcodec import settings

        return getattr(settings, name)
    if name in __all__:
        from neuralcodec import api

        return getattr(api, name)
    raise AttributeError(name)
