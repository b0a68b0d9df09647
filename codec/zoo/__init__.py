"""Weights: which files ship and what their cards say (catalog), safetensors loading, model building and
export with derived entropy tables (weights_io)."""
