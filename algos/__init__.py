"""Meta-learning algorithms, one file each, reading like their papers' pseudocode."""
