"""Grazing-incidence geometry, incidence-angle checks and instrumental resolution."""
