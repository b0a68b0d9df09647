"""Rate-distortion measurement: evaluation of codecs on a set of images against anchors (evaluate),
BD-rate (rd)."""
