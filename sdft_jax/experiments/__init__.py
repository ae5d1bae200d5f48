"""Experiments built on the programs: the demo world and the knowledge-acquisition study."""
