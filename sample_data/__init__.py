"""Seeded synthetic in-situ beamtime (GISAXS and GIWAXS frames) and its generator."""
