"""Monte Carlo of patchy truncated nanocubes confined to a plane."""
