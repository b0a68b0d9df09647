"""Training: the loop, its recipe and checkpoints (loop); shipped recipes in recipes/."""
