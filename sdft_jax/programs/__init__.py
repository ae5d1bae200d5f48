"""The programs a config declares (train, continual, compare) and the sweep that repeats them."""
