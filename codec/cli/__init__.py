"""The command line: click commands (main), a thin layer over neuralcodec.api, and directory runs (batch)."""
