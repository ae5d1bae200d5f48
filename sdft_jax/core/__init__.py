"""The algorithm: sampler, losses, train state, the update and the one-program step. Knows no files, no config."""
