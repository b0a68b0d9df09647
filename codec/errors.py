"""The library's errors: one base class, so a caller can catch everything neuralcodec raises on purpose.

Messages say what is wrong in one line and never name command-line flags: the library does not know how it
is called. Where a caller can do something about an error, ``reason`` names the case (the CLI turns it into a
hint about a flag: see ``neuralcodec.cli.batch.HINTS``).
"""

from __future__ import annotations


class NeuralcodecError(Exception):
    """Base of every error neuralcodec raises on purpose; ``reason``: a short machine-readable case or None."""

    def __init__(self, message: str = "", reason: str | None = None):
        super().__init__(message)
        self.reason = reason


# reasons a caller may act on
PIXEL_LIMIT = "pixel_limit"  # a file's image is bigger than the decoder's pixel limit
GPU_OUT_OF_MEMORY = "gpu_out_of_memory"  # decoding ran out of GPU memory (the CPU may have more)
NIC_INPUT = "nic_input"  # an image was expected, and a .nic file came (decode it instead)
