"""Shared pytest setup: a non-interactive matplotlib backend for every test."""

import matplotlib

matplotlib.use("Agg")
