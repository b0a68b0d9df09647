"""Entropy coding of latents: constriction range coding with count tables (entropy), one coding stage per
latent level (stages), and the integer prior networks every platform evaluates bit-exactly (integer)."""
