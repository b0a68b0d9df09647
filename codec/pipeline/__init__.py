"""The model (torch) wired to the coder: `Codec` (image <-> chunks), its tiled transforms (tiling) and
encoder-side latent refinement (refine). The only room that holds both torch tensors and coded bytes."""
