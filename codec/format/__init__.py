"""The `.nic` file and the image files around it: container and header (bitstream), pixel planes and
alpha (imaging), atomic writes (fileio). Knows nothing of torch."""
