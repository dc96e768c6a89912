"""Datasets derived from built ones with a model's help: `latents` (`dropj encode`: episodes as VAE latents,
the world model's training data). The model comes in as a function; no torch here.

Imports roundtrip and the floors below it; never `feedback` or `recording` (peers).
"""
