"""Per-frame reduction: q_parallel cuts, peak fits, lattice and Scherrer analysis, output."""
