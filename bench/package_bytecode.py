"""What the timing scripts (speed.py, startup.py, big_images.py) set up first: the package's bytecode."""

from pathlib import Path


def compile_package() -> None:
    """Write the package's bytecode, as pip does when it installs a wheel, so every fresh call reads it instead of
    compiling the modules' source. An editable install under PYTHONDONTWRITEBYTECODE (the development machines)
    compiled them in every call: 0.01-0.09 s of a one-image call (experiments/call_overheads.py, two runs)."""
    import compileall

    import neuralcodec
    import neuralcodec.models

    for package in (neuralcodec, neuralcodec.models):
        compileall.compile_dir(str(Path(package.__file__).parent), quiet=1)
