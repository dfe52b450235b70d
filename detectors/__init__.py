"""Detector models, masks and frame readers for in-situ GISAXS/GIWAXS."""
