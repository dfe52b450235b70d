"""The one family of insitu-gixs errors, at the bottom of the import graph.

Every message names the file (or config key), what was expected, what was found and,
where one exists, the fix.
"""


class GixsError(Exception):
    """Base class of every insitu-gixs error."""


class FrameReadError(GixsError, OSError):
    """A frame file cannot be read: missing, empty, truncated, wrong shape or no frames."""


class ConfigError(GixsError, ValueError):
    """A configuration file or setting is invalid (unknown key, bad value, missing file)."""


class GeometryError(GixsError, ValueError):
    """A geometry (PONI file, incidence angle, orientation) is missing or inconsistent."""


class SimulationError(GixsError, ValueError):
    """Monte Carlo settings that cannot be run (bad eps, patch ratio, density, N)."""


class OutputError(GixsError, OSError):
    """The output folder cannot be written: a file, read-only, full, or held by another run."""
