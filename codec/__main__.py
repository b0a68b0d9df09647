"""`python -m neuralcodec`: the command line."""

from neuralcodec.cli.main import entry

entry()
