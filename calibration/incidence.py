"""The incidence angle and the frame orientation, read from the frame itself.

Two features of a grazing-incidence frame pin the geometry down:

* the direct beam, at q = 0, and the specular reflection, at exit angle alpha_f = alpha_i,
  that is 2 alpha_i above the direct beam (q_par = 0, q_perp = 2 k sin alpha_i);
* the Yoneda band, at exit angle alpha_f = alpha_c (the critical angle of the liquid,
  about 0.13 deg for ethylene glycol at 10 keV), alpha_i + alpha_c above the direct beam.

:func:`estimate_incidence_angle` measures alpha_i from either, to check the motor value
(:func:`check_incidence_angle`). :func:`check_orientation` tests that the geometry puts
the direct beam at q = 0 and the specular spot at q_perp = +2 k sin alpha_i on the frame
as stored: it fails on a frame flipped vertically relative to its PONI (Dioptas) or with
the wrong pyFAI sample orientation, which otherwise give plausible cuts from the wrong
side of the horizon.

Angles on the detector are measured along the "elevation" above the incident beam, in the
plane of the beam and the surface normal. It is derived, for every pixel, from the q maps
of :class:`~calibration.geometry.GIGeometry` (so detector tilts, detector orientation and
sample orientation are pyFAI's): with n the unit vector from the sample to the pixel,
``n_beam = 1 - |q|^2 / (2 k^2)`` and
``n_up = (q_perp / k - sin a + n_beam sin a) / cos a`` at the geometry's incidence a,
which do not depend on a; the elevation is ``atan2(n_up, n_beam)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import lmfit
import numba
import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import map_coordinates

from calibration.geometry import (
    ETHYLENE_GLYCOL_CRITICAL_ANGLE_DEG,
    GIGeometry,
    QMaps,
    flipped_axes,
)
from detectors.errors import GeometryError

#: A spot (direct beam, specular) counts as found when its peak is at least this many
#: times the local median background (plus one count).
MIN_SPOT_CONTRAST = 10.0

#: A Yoneda maximum counts as found when its fitted height is this many standard errors.
MIN_YONEDA_SIGNIFICANCE = 5.0

IncidenceMethod = Literal["specular", "yoneda"]


@dataclass(frozen=True, slots=True)
class IncidenceEstimate:
    """Incidence angle measured on a frame.

    Attributes
    ----------
    incidence_angle_deg, incidence_angle_err_deg : float
        alpha_i and its standard error from the peak-centre fits, in degrees (NaN when
        not `ok`). The Yoneda value also carries the uncertainty of the critical angle,
        which is not included.
    method : {"specular", "yoneda"}
        The feature used.
    ok : bool
        False when the feature could not be found; `message` says why.
    beam_row_px, beam_col_px : float
        Direct beam position (fractional pixel, rows and columns of the frame as stored),
        measured when `beam_found`, else where the PONI puts it (possibly off the frame).
    beam_found : bool
        True when the direct beam was located on the frame.
    spot_row_px : float
        Row of the specular spot or the Yoneda maximum (NaN when not found).
    column_px : float
        Central column of the profile used for the spot.
    critical_angle_deg : float
        Critical angle assumed by the Yoneda method (NaN for "specular").
    message : str
        One sentence for the log, in beamline terms.
    """

    incidence_angle_deg: float
    incidence_angle_err_deg: float
    method: IncidenceMethod
    ok: bool
    beam_row_px: float
    beam_col_px: float
    beam_found: bool
    spot_row_px: float
    column_px: float
    critical_angle_deg: float
    message: str


@dataclass(frozen=True, slots=True)
class IncidenceCheck:
    """A measured incidence angle compared with the motor (nominal) value.

    Attributes
    ----------
    ok : bool
        True when the two agree within the tolerance.
    difference_deg : float
        Measured minus nominal, in degrees (NaN when nothing was measured).
    message : str
        What to tell the user, including the value to use when they disagree.
    """

    ok: bool
    difference_deg: float
    message: str


@dataclass(frozen=True, slots=True)
class OrientationCheck:
    """Result of the orientation self-test of :func:`check_orientation`.

    Attributes
    ----------
    status : {"pass", "fail", "untestable"}
        "pass": direct beam at q = 0 and specular spot at q_perp = +2 k sin alpha_i;
        "fail": the frame contradicts the geometry (see `message`); "untestable": the
        features needed are not on this frame (beam off the detector, no specular spot),
        so nothing was proven either way.
    message : str
        What was found, and the likely fix when it failed.
    beam_q_par_per_nm, beam_q_perp_per_nm : float
        q at the direct beam found on the frame, in nm^-1 (NaN when not found).
    specular_q_par_per_nm, specular_q_perp_per_nm : float
        q at the specular spot found, in nm^-1 (NaN when not found).
    expected_specular_q_perp_per_nm : float
        2 k sin(alpha_i) for the geometry's incidence angle, in nm^-1.
    beam_row_px, beam_col_px : float
        Direct beam position where found, else where the geometry puts q = 0.
    specular_row_px : float
        Row of the specular spot (NaN when not found).
    """

    status: Literal["pass", "fail", "untestable"]
    message: str
    beam_q_par_per_nm: float
    beam_q_perp_per_nm: float
    specular_q_par_per_nm: float
    specular_q_perp_per_nm: float
    expected_specular_q_perp_per_nm: float
    beam_row_px: float
    beam_col_px: float
    specular_row_px: float

    @property
    def ok(self) -> bool:
        """False only when the test failed; an untestable frame does not stop a run."""
        return self.status != "fail"


def direct_beam_pixel(geometry: GIGeometry) -> tuple[float, float]:
    """Where the direct beam (q = 0) hits the detector plane, as (row, col) of the frame.

    Fractional pixel indices, pixel centres at integers, in the frame as stored (pyFAI's
    detector orientation applied). The point may lie off the frame.

    Examples
    --------
    >>> from calibration.geometry import DetectorGeometry
    >>> det = DetectorGeometry("Pilatus300kw", 0.578, 0.03, 0.12, 0.12398e-9)
    >>> row, col = direct_beam_pixel(GIGeometry(det, incidence_angle_deg=0.3))
    >>> round(row, 2), round(col, 2)
    (173.92, 697.17)
    """
    fit2d = geometry.integrator().getFit2D()
    row = float(fit2d["centerY"]) - 0.5
    col = float(fit2d["centerX"]) - 0.5
    rows, cols = geometry.detector.shape
    orientation = geometry.detector.orientation
    if orientation in (1, 2):
        row = rows - 1 - row
    if orientation in (1, 4):
        col = cols - 1 - col
    return row, col


def estimate_incidence_angle(
    data: NDArray[np.floating],
    geometry: GIGeometry,
    *,
    mask: NDArray[np.bool_] | None = None,
    method: IncidenceMethod = "specular",
    critical_angle_deg: float = ETHYLENE_GLYCOL_CRITICAL_ANGLE_DEG,
    search_px: int = 10,
    band_half_width_px: int = 3,
    yoneda_columns_px: tuple[int, int] = (10, 150),
) -> IncidenceEstimate:
    """Measure the incidence angle on a frame, from the specular spot or the Yoneda band.

    The direct beam is looked for within `search_px` of where the PONI puts it; when it
    is masked, blocked or off the frame, the PONI position is used instead.

    * ``"specular"``: the brightest spot above the beam, in a column band of
      +-`band_half_width_px` through the beam. Its elevation above the beam is 2 alpha_i
      (for an untilted detector, alpha_i = 0.5 atan(dz / distance)).
    * ``"yoneda"``: the maximum of the vertical profile averaged over the off-specular
      columns `yoneda_columns_px` (min, max distance from the beam column) on both sides.
      It lies at exit angle alpha_c: alpha_i = elevation - alpha_c, corrected exactly for
      the columns' horizontal angle.

    Parameters
    ----------
    data : ndarray of shape (rows, cols)
        Frame as stored, in counts; negative values (gaps, bad pixels) are ignored.
    geometry : GIGeometry
        Geometry of the frame; its incidence angle only sets the search direction (up =
        towards positive q_perp), not the answer.
    mask : ndarray of bool, shape (rows, cols), optional
        True where a pixel must be ignored (gaps, beamstop).
    method : {"specular", "yoneda"}
        Feature to use.
    critical_angle_deg : float
        Critical angle of the liquid for the Yoneda method, in degrees.
    search_px : int
        Half-size of the square searched for the direct beam, in pixels.
    band_half_width_px : int
        Half-width of the column band through the beam, in pixels.
    yoneda_columns_px : (int, int)
        Distance range from the beam column of the off-specular columns, in pixels.

    Returns
    -------
    IncidenceEstimate
        With ``ok=False`` and a message when the feature is not on the frame.

    Raises
    ------
    GeometryError
        If the frame shape does not match the detector, or an option is out of range.
    """
    if method not in ("specular", "yoneda"):
        msg = f"incidence method must be 'specular' or 'yoneda', got {method!r}"
        raise GeometryError(msg)
    if not 0 < critical_angle_deg < 1:
        msg = f"critical angle must be in (0, 1) degrees, got {critical_angle_deg!r}"
        raise GeometryError(msg)
    inner_px, outer_px = yoneda_columns_px
    if not 0 <= inner_px < outer_px:
        msg = f"yoneda_columns_px must be (min, max) with 0 <= min < max, got {yoneda_columns_px}"
        raise GeometryError(msg)
    frame = _valid_frame(data, geometry, mask)
    maps = geometry.q_maps()
    elevation_rad, reach = _elevation_maps(maps, geometry)
    beam = _find_direct_beam(frame, geometry, search_px=search_px)
    column = beam.col if beam.on_frame else _clip(beam.col, frame.shape[1])
    beam_elevation_rad = (
        _sample(elevation_rad, beam.row, beam.col) if beam.found else 0.0  # PONI: beam at 0
    )
    up = _up_sign(elevation_rad)

    def not_found(message: str, spot_row: float = math.nan) -> IncidenceEstimate:
        return IncidenceEstimate(
            math.nan,
            math.nan,
            method,
            False,
            beam.row,
            beam.col,
            beam.found,
            spot_row,
            column,
            critical_angle_deg if method == "yoneda" else math.nan,
            message,
        )

    if method == "specular":
        columns = _band(column, band_half_width_px, frame.shape[1])
    else:
        columns = _side_bands(column, inner_px, outer_px, frame.shape[1])
        if columns.size == 0:
            return not_found(
                f"no off-specular columns {inner_px}-{outer_px} px from the beam column "
                f"{column:.0f} on this frame"
            )
    profile, sigma = _column_profile(frame, columns)
    rows = np.arange(frame.shape[0], dtype=np.float64)
    first_row = beam.row + up * max(4.0, 2.0 * band_half_width_px)
    search = (rows - first_row) * up >= 0
    nominal_rad = geometry.incidence_angle_rad
    expected_rad = (
        2 * nominal_rad if method == "specular" else nominal_rad + math.radians(critical_angle_deg)
    )
    expected_row = _row_at(elevation_rad, columns, beam_elevation_rad + expected_rad)
    expected = f"for the nominal {geometry.incidence_angle_deg:g} deg it would be " + (
        "off the detector" if expected_row is None else f"near row {expected_row:.0f}"
    )
    peak = _strongest_peak(profile, search)
    if peak is None:
        return not_found(
            f"no {_feature(method)} found above the direct beam (row {beam.row:.1f}) in "
            f"columns around {column:.0f} ({expected}); {beam.description}"
        )
    background = float(np.nanmedian(profile[search]))
    if method == "specular" and not profile[peak] >= MIN_SPOT_CONTRAST * (background + 1):
        return not_found(
            f"no specular spot above the direct beam in columns {column:.0f} +- "
            f"{band_half_width_px}: brightest point (row {peak}) is only "
            f"{profile[peak] / (background + 1):.1f} x the background ({expected}); "
            f"{beam.description}"
        )
    refined = _refine_peak(profile, sigma, peak)
    if refined is None:
        return not_found(f"the {_feature(method)} at row {peak} could not be fitted")
    spot_row, spot_row_err, height, height_err = refined
    if method == "yoneda" and not height > MIN_YONEDA_SIGNIFICANCE * height_err:
        return not_found(
            f"the off-specular profile has no significant maximum above the beam (row "
            f"{spot_row:.1f}, {height / height_err:.1f} standard errors; {expected})",
            spot_row,
        )
    spot_elevation_rad = _profile_value(elevation_rad, columns, spot_row)
    drow_rad = abs(
        _profile_value(elevation_rad, columns, spot_row + 0.5)
        - _profile_value(elevation_rad, columns, spot_row - 0.5)
    )
    relative_rad = spot_elevation_rad - beam_elevation_rad
    if method == "specular":
        alpha_i_rad = relative_rad / 2
        err_rad = 0.5 * drow_rad * math.hypot(spot_row_err, beam.row_err)
    else:
        ratio = math.sin(math.radians(critical_angle_deg)) / _profile_value(
            reach, columns, spot_row
        )
        alpha_i_rad = relative_rad - math.asin(ratio)
        err_rad = drow_rad * math.hypot(spot_row_err, beam.row_err)
    alpha_i_deg = math.degrees(alpha_i_rad)
    if not alpha_i_deg > 0:
        return not_found(
            f"the {_feature(method)} at row {spot_row:.1f} gives a non-positive incidence "
            f"angle ({alpha_i_deg:.3f} deg); {beam.description}",
            spot_row,
        )
    message = (
        f"incidence angle {alpha_i_deg:.4f} +- {math.degrees(err_rad):.2g} deg (statistical) "
        f"from the {_feature(method)} at row {spot_row:.2f}, direct beam at row "
        f"{beam.row:.2f} ({'found on the frame' if beam.found else beam.description})"
    )
    if method == "yoneda":
        message += f", assuming a critical angle of {critical_angle_deg:g} deg"
    return IncidenceEstimate(
        alpha_i_deg,
        math.degrees(err_rad),
        method,
        True,
        beam.row,
        beam.col,
        beam.found,
        spot_row,
        column,
        critical_angle_deg if method == "yoneda" else math.nan,
        message,
    )


def check_incidence_angle(
    estimate: IncidenceEstimate, nominal_deg: float, *, tolerance_deg: float = 0.02
) -> IncidenceCheck:
    """Compare a measured incidence angle with the motor value.

    Parameters
    ----------
    estimate : IncidenceEstimate
        From :func:`estimate_incidence_angle`.
    nominal_deg : float
        Incidence angle the motor (or the settings) claim, in degrees.
    tolerance_deg : float
        Largest accepted difference, in degrees.

    Returns
    -------
    IncidenceCheck
        ``ok`` is False when they disagree or nothing was measured.

    Examples
    --------
    >>> est = IncidenceEstimate(0.352, 0.002, "specular", True, 174.0, 697.0, True, 133.0,
    ...                         697.0, float("nan"), "")
    >>> check = check_incidence_angle(est, 0.3)
    >>> check.ok, round(check.difference_deg, 3)
    (False, 0.052)
    >>> print(check.message.split(": ")[-1])
    check the motor, or reduce with incidence angle 0.352 deg
    """
    if not estimate.ok:
        return IncidenceCheck(False, math.nan, f"incidence angle not measured: {estimate.message}")
    difference = estimate.incidence_angle_deg - nominal_deg
    measured = (
        f"measured incidence angle {estimate.incidence_angle_deg:.3f} +- "
        f"{estimate.incidence_angle_err_deg:.3f} deg ({estimate.method})"
    )
    if abs(difference) <= tolerance_deg:
        return IncidenceCheck(
            True,
            difference,
            f"{measured} agrees with the nominal {nominal_deg:.3f} deg "
            f"(difference {difference:+.3f}, tolerance {tolerance_deg:g})",
        )
    return IncidenceCheck(
        False,
        difference,
        f"{measured} differs from the nominal {nominal_deg:.3f} deg by {difference:+.3f} deg "
        f"(tolerance {tolerance_deg:g}): check the motor, or reduce with incidence angle "
        f"{estimate.incidence_angle_deg:.3f} deg",
    )


def check_orientation(
    data: NDArray[np.floating],
    geometry: GIGeometry,
    *,
    mask: NDArray[np.bool_] | None = None,
    search_px: int = 10,
    band_half_width_px: int = 3,
    tolerance_px: float = 2.0,
    specular_rel_tolerance: float = 0.25,
) -> OrientationCheck:
    """Self-test that the geometry puts q = 0 on the beam and the specular spot above it.

    1. The direct beam must be found within `search_px` of where the geometry puts q = 0,
       and its q (both components) within `tolerance_px` pixels' worth of 0.
    2. The brightest spot of the column band through the beam, above or below it, must
       be the specular spot at q_perp = +2 k sin(alpha_i), within
       `specular_rel_tolerance` (which allows for a slightly wrong incidence angle);
       found below the beam (negative q_perp), the frame is flipped vertically relative
       to the geometry.
    3. q_par must grow with the column index (q_par positive to the right), in the frame
       as pyFAI's default detector orientation stores it
       (:func:`~calibration.geometry.flipped_axes`).

    Parameters
    ----------
    data : ndarray of shape (rows, cols)
        Frame as stored, with the direct beam (attenuated) and the specular spot on it.
    geometry : GIGeometry
        Geometry under test.
    mask : ndarray of bool, shape (rows, cols), optional
        True where a pixel must be ignored. Mask a beamstop: a masked beam is skipped
        (only the specular spot is tested), an unmasked blocked beam fails the test.
    search_px : int
        Half-size of the square searched for the direct beam, in pixels.
    band_half_width_px : int
        Half-width of the column band through the beam, in pixels.
    tolerance_px : float
        Accepted distance of the beam from q = 0, in pixels.
    specular_rel_tolerance : float
        Accepted relative difference of the specular q_perp from 2 k sin(alpha_i).

    Returns
    -------
    OrientationCheck
        "untestable" when the direct beam lies off the frame or no specular spot is on it.

    Raises
    ------
    GeometryError
        If the frame shape does not match the detector.
    """
    frame = _valid_frame(data, geometry, mask)
    maps = geometry.q_maps()
    expected = geometry.specular_q_perp_per_nm
    beam = _find_direct_beam(frame, geometry, search_px=search_px)
    nan = math.nan

    def result(
        status: Literal["pass", "fail", "untestable"],
        message: str,
        beam_q: tuple[float, float] = (nan, nan),
        spec_q: tuple[float, float] = (nan, nan),
        spec_row: float = nan,
    ) -> OrientationCheck:
        return OrientationCheck(
            status, message, *beam_q, *spec_q, expected, beam.row, beam.col, spec_row
        )

    d_par_d_col = float(np.nanmedian(np.diff(maps.q_par_per_nm, axis=1)))
    if flipped_axes(geometry.detector.orientation)[1]:  # stored left-right flipped
        d_par_d_col = -d_par_d_col
    if not d_par_d_col > 0:
        return result(
            "fail",
            "q_par decreases to the right on this frame: use sample_orientation='auto' (or "
            "the orientation that puts q_par positive to the right of the beam)",
        )
    if not beam.on_frame:
        return result(
            "untestable",
            f"not testable on this frame: the direct beam (row {beam.row:.1f}, col "
            f"{beam.col:.1f}) is off the detector; test the orientation on a frame with the "
            "attenuated direct beam and the specular spot on the detector",
        )
    q_step = geometry.k_per_nm * _pixel_angle_rad(geometry)
    beam_q = (nan, nan)
    if beam.found:
        beam_q = (
            _sample(maps.q_par_per_nm, beam.row, beam.col),
            _sample(maps.q_perp_per_nm, beam.row, beam.col),
        )
        if math.hypot(*beam_q) > tolerance_px * q_step:
            return result(
                "fail",
                f"direct beam found at row {beam.row:.1f}, col {beam.col:.1f}, where the "
                f"geometry gives q_par = {beam_q[0]:.4f}, q_perp = {beam_q[1]:.4f} nm^-1 "
                f"instead of 0 (more than {tolerance_px:g} px off): the PONI does not match "
                "this frame",
                beam_q,
            )
    elif not beam.masked:
        return result(
            "fail",
            f"no direct beam within {search_px} px of row {beam.row:.1f}, col "
            f"{beam.col:.1f}, where the geometry puts q = 0: the frame may be flipped "
            "vertically relative to its PONI (a Dioptas PONI?) or the PONI belongs to "
            "another set-up; if a beamstop hides the beam, mask it",
        )
    columns = _band(beam.col, band_half_width_px, frame.shape[1])
    profile, sigma = _column_profile(frame, columns)
    rows = np.arange(frame.shape[0], dtype=np.float64)
    away = np.abs(rows - beam.row) >= max(4.0, 2.0 * band_half_width_px)
    peak = _strongest_peak(profile, away)
    background = float(np.nanmedian(profile[away])) if np.any(away) else nan
    refined = None
    if peak is not None and profile[peak] >= MIN_SPOT_CONTRAST * (background + 1):
        refined = _refine_peak(profile, sigma, peak)
    if refined is None:
        return result(
            "untestable",
            f"direct beam {'at q = 0' if beam.found else 'masked'}, but no specular spot in "
            f"columns {beam.col:.0f} +- {band_half_width_px}: up/down not tested on this frame",
            beam_q,
        )
    spec_row = refined[0]
    spec_q = (
        _sample(maps.q_par_per_nm, spec_row, beam.col),
        _sample(maps.q_perp_per_nm, spec_row, beam.col),
    )
    where = (
        f"specular spot at row {spec_row:.1f}: q_perp = {spec_q[1]:.4f} nm^-1, expected "
        f"2 k sin(alpha_i) = {expected:.4f} nm^-1"
    )
    if spec_q[1] <= 0:
        return result(
            "fail",
            f"{where}; it lies BELOW the direct beam: the frame is flipped vertically "
            "relative to the geometry (a Dioptas PONI?) or the sample orientation is wrong; "
            "use a pyFAI PONI and sample_orientation='auto'",
            beam_q,
            spec_q,
            spec_row,
        )
    if abs(spec_q[1] - expected) > specular_rel_tolerance * expected:
        alpha_deg = math.degrees(math.asin(min(1.0, spec_q[1] / (2 * geometry.k_per_nm))))
        return result(
            "fail",
            f"{where}; the incidence angle looks like {alpha_deg:.3f} deg, not "
            f"{geometry.incidence_angle_deg:g} deg: check it with estimate_incidence_angle",
            beam_q,
            spec_q,
            spec_row,
        )
    return result(
        "pass",
        f"direct beam {'at q = 0' if beam.found else 'masked (not tested)'}, {where}, "
        "q_par positive to the right: the orientation is right",
        beam_q,
        spec_q,
        spec_row,
    )


@dataclass(frozen=True, slots=True)
class IncidenceReport:
    """Everything ``gixs calibrate incidence`` reports for one frame.

    Attributes
    ----------
    specular, yoneda : IncidenceEstimate
        The incidence angle from each feature.
    specular_check, yoneda_check : IncidenceCheck
        Each compared with the geometry's (motor) incidence angle.
    orientation : OrientationCheck
        The orientation self-test.
    """

    specular: IncidenceEstimate
    yoneda: IncidenceEstimate
    specular_check: IncidenceCheck
    yoneda_check: IncidenceCheck
    orientation: OrientationCheck

    @property
    def best(self) -> IncidenceEstimate:
        """The specular estimate when found (it assumes no critical angle), else Yoneda."""
        return self.specular if self.specular.ok else self.yoneda

    @property
    def ok(self) -> bool:
        """False if the orientation test failed or the best estimate disagrees with the motor.

        A frame on which nothing could be measured is not a failure.
        """
        check = self.specular_check if self.specular.ok else self.yoneda_check
        return self.orientation.ok and (check.ok or not self.best.ok)

    def summary(self) -> str:
        """Three lines for the terminal: orientation, specular, Yoneda."""
        return "\n".join(
            [
                f"orientation: {self.orientation.status}: {self.orientation.message}",
                f"specular: {self.specular_check.message}",
                f"yoneda: {self.yoneda_check.message}",
            ]
        )


def calibrate_incidence(
    data: NDArray[np.floating],
    geometry: GIGeometry,
    *,
    mask: NDArray[np.bool_] | None = None,
    tolerance_deg: float = 0.02,
    critical_angle_deg: float = ETHYLENE_GLYCOL_CRITICAL_ANGLE_DEG,
) -> IncidenceReport:
    """Both incidence estimates, their motor checks and the orientation test, in one call.

    Parameters
    ----------
    data : ndarray of shape (rows, cols)
        Frame as stored, in counts.
    geometry : GIGeometry
        Geometry with the motor (nominal) incidence angle.
    mask : ndarray of bool, shape (rows, cols), optional
        True where a pixel must be ignored.
    tolerance_deg : float
        Accepted difference from the motor value, in degrees.
    critical_angle_deg : float
        Critical angle of the liquid for the Yoneda method, in degrees.

    Returns
    -------
    IncidenceReport

    Raises
    ------
    GeometryError
        If the frame shape does not match the detector.
    """
    nominal_deg = geometry.incidence_angle_deg
    specular = estimate_incidence_angle(data, geometry, mask=mask, method="specular")
    yoneda = estimate_incidence_angle(
        data, geometry, mask=mask, method="yoneda", critical_angle_deg=critical_angle_deg
    )
    return IncidenceReport(
        specular=specular,
        yoneda=yoneda,
        specular_check=check_incidence_angle(specular, nominal_deg, tolerance_deg=tolerance_deg),
        yoneda_check=check_incidence_angle(yoneda, nominal_deg, tolerance_deg=tolerance_deg),
        orientation=check_orientation(data, geometry, mask=mask),
    )


#: Largest accepted difference between the incidence angle measured on a frame during a
#: reduction and the given one, in degrees, from the specular spot and from the Yoneda
#: band (which also carries the uncertainty of the assumed critical angle).
FRAME_TOLERANCE_DEG: dict[IncidenceMethod, float] = {"specular": 0.02, "yoneda": 0.03}

#: Flag of a frame whose measured incidence angle disagrees with the given one.
FLAG_INCIDENCE_MISMATCH = "incidence_mismatch"


@dataclass(frozen=True, slots=True)
class FrameBand:
    """One column band of the per-frame incidence check, cut to the rows searched.

    Attributes
    ----------
    row_start, row_stop : int
        Rows of the frame the band covers (the search window plus a margin).
    columns : ndarray of int
        Columns of the frame averaged (empty: the band is not on the frame).
    elevation_rad, reach : ndarray of shape (row_stop - row_start,)
        Mean elevation above the incident beam of each row, in rad, and the mean
        ``sqrt(n_up^2 + n_beam^2)`` (the cosine of the columns' horizontal angle).
    masked : ndarray of bool, shape (row_stop - row_start, n_columns)
        Static mask of the band's pixels.
    search : ndarray of bool, shape (row_stop - row_start,)
        Rows where the feature is looked for.
    """

    row_start: int
    row_stop: int
    columns: NDArray[np.intp]
    elevation_rad: NDArray[np.float64]
    reach: NDArray[np.float64]
    masked: NDArray[np.bool_]
    search: NDArray[np.bool_]

    def profile(
        self, data: NDArray[Any], pixels: ValidPixels
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Mean of the valid pixels of each row of the band, and its Poisson error."""
        return _band_profile(data, self.row_start, self.row_stop, self.columns, self.masked, pixels)


@dataclass(frozen=True, slots=True)
class ValidPixels:
    """Which pixel values of a frame the incidence check counts, as the cut does.

    Valid: not negative, not NaN, below `limit` (the data type's largest value, a gap or
    bad pixel in integer data, and the detector's saturation), and not in the detector's
    own `pixel_mask`. Build it with :meth:`of_frame`.

    Attributes
    ----------
    limit : float
        Values at or above are no counts.
    pixel_mask : ndarray of bool, shape (rows, cols), or shape (0, 0)
        The detector's own mask of the frame, True = masked; (0, 0) for none.
    """

    limit: float
    pixel_mask: NDArray[np.bool_]

    @classmethod
    def of_frame(
        cls,
        data: NDArray[Any],
        *,
        saturation_counts: float | None = None,
        pixel_mask: NDArray[np.bool_] | None = None,
    ) -> ValidPixels:
        """The rule for `data` (its type's limit), its saturation and its pixel mask."""
        kind = np.asarray(data).dtype
        limit = float(np.iinfo(kind).max) if kind.kind in "iu" else math.inf
        if saturation_counts is not None:
            limit = min(limit, float(saturation_counts))
        mask = np.zeros((0, 0), dtype=bool) if pixel_mask is None else pixel_mask
        return cls(limit, np.asarray(mask, dtype=bool))


@dataclass(frozen=True, slots=True)
class FrameIncidencePlan:
    """What the per-frame incidence check needs, computed once per geometry.

    The reduction checks every frame where the specular spot or the Yoneda band is seen,
    with no pass over the data of its own: the elevation profiles of two column bands
    come from the geometry's q maps (already computed for the cut), and a frame only
    costs the column profiles of those bands over the rows where an incidence angle up
    to ``2 x nominal + 0.5 deg`` would put them. The direct beam is taken where the PONI
    puts it (elevation 0), so the measured angle is the one the reduction's q values
    assume. Build it with :func:`plan_frame_incidence`.

    Attributes
    ----------
    nominal_deg : float
        The given incidence angle, in degrees.
    critical_angle_deg : float
        Critical angle assumed for the Yoneda band, in degrees.
    tolerance_deg : dict
        Accepted difference per method, in degrees.
    specular : FrameBand
        Column band through the direct beam (no columns when the beam column is off the
        frame: no specular spot there).
    yoneda : FrameBand
        The off-specular columns on both sides.
    """

    nominal_deg: float
    critical_angle_deg: float
    tolerance_deg: dict[IncidenceMethod, float]
    specular: FrameBand
    yoneda: FrameBand


def plan_frame_incidence(
    geometry: GIGeometry,
    *,
    maps: QMaps,
    static_mask: NDArray[np.bool_] | None = None,
    critical_angle_deg: float = ETHYLENE_GLYCOL_CRITICAL_ANGLE_DEG,
    tolerance_deg: dict[IncidenceMethod, float] | None = None,
    band_half_width_px: int = 3,
    yoneda_columns_px: tuple[int, int] = (10, 150),
    margin_px: int = 20,
) -> FrameIncidencePlan:
    """Precompute the per-frame incidence check of a geometry (run once, with the cut).

    Parameters
    ----------
    geometry : GIGeometry
        The geometry, with the given incidence angle.
    maps : QMaps
        Its q maps (:meth:`GIGeometry.q_maps`).
    static_mask : ndarray of bool, shape (rows, cols), optional
        Gaps and user mask, True = masked.
    critical_angle_deg : float
        Critical angle of the liquid for the Yoneda band, in degrees.
    tolerance_deg : dict or None
        Accepted difference per method (default :data:`FRAME_TOLERANCE_DEG`).
    band_half_width_px : int
        Half-width of the column band through the beam, in pixels.
    yoneda_columns_px : (int, int)
        Distance range of the off-specular columns from the beam column, in pixels.
    margin_px : int
        Rows kept on each side of the search window, for the background.

    Returns
    -------
    FrameIncidencePlan
    """
    elevation_rad, reach = geometry.elevation_rad(maps)
    n_rows, n_cols = elevation_rad.shape
    beam_row, beam_col = direct_beam_pixel(geometry)
    mask = np.zeros((n_rows, n_cols), dtype=bool) if static_mask is None else static_mask
    up = _up_sign(elevation_rad)
    rows = np.arange(n_rows, dtype=np.float64)
    above_beam = (rows - (beam_row + up * max(4.0, 2.0 * band_half_width_px))) * up >= 0
    alpha_max_rad = math.radians(2 * geometry.incidence_angle_deg + 0.5)
    critical_rad = math.radians(critical_angle_deg)

    def band(columns: NDArray[np.intp], highest_rad: float) -> FrameBand:
        if columns.size == 0:
            return FrameBand(
                0, 0, columns, *(np.zeros(0),) * 2, np.zeros((0, 0), bool), *(np.zeros(0, bool),)
            )
        elevation = np.mean(elevation_rad[:, columns], axis=1)
        search = above_beam & (elevation > 0) & (elevation <= highest_rad)
        inside = np.flatnonzero(search)
        if inside.size == 0:
            return band(np.arange(0, dtype=np.intp), highest_rad)
        start = max(0, int(inside[0]) - margin_px)
        stop = min(n_rows, int(inside[-1]) + margin_px + 1)
        return FrameBand(
            start,
            stop,
            columns,
            np.asarray(elevation[start:stop], dtype=np.float64),
            np.asarray(np.mean(reach[start:stop][:, columns], axis=1), dtype=np.float64),
            np.asarray(mask[start:stop][:, columns], dtype=bool),
            search[start:stop],
        )

    beam_col_on_frame = -0.5 <= beam_col <= n_cols - 0.5
    specular = (
        _band(beam_col, band_half_width_px, n_cols)
        if beam_col_on_frame
        else np.arange(0, dtype=np.intp)
    )
    yoneda = _side_bands(_clip(beam_col, n_cols), *yoneda_columns_px, n_cols)
    return FrameIncidencePlan(
        nominal_deg=geometry.incidence_angle_deg,
        critical_angle_deg=critical_angle_deg,
        tolerance_deg=dict(tolerance_deg or FRAME_TOLERANCE_DEG),
        specular=band(specular, 2 * alpha_max_rad),
        yoneda=band(yoneda, alpha_max_rad + critical_rad),
    )


def measure_frame_incidence(
    data: NDArray[Any],
    plan: FrameIncidencePlan,
    *,
    saturation_counts: float | None = None,
    pixel_mask: NDArray[np.bool_] | None = None,
) -> tuple[float, IncidenceMethod] | None:
    """The incidence angle seen on one frame, or None where neither feature is seen.

    The specular spot counts when the brightest row of the band through the beam is at
    least :data:`MIN_SPOT_CONTRAST` times the band's median and the off-specular columns
    at that row (so the Yoneda band is not taken for it); otherwise the Yoneda band counts
    when its maximum stands :data:`MIN_YONEDA_SIGNIFICANCE` Poisson errors above its
    surroundings. Positions are refined to a fraction of a pixel by a Gaussian through
    the three highest rows (no fit, so that the check costs little).

    Parameters
    ----------
    data : ndarray of shape (rows, cols)
        The frame as stored, in counts. Pixels that hold no count are ignored, as the cut
        ignores them: negative, non-finite, the data type's largest value, at or above
        `saturation_counts`, or True in `pixel_mask`.
    plan : FrameIncidencePlan
        From :func:`plan_frame_incidence`.
    saturation_counts : float or None
        The detector's saturation, in counts (None: the data type's limit only).
    pixel_mask : ndarray of bool, shape (rows, cols), or None
        The detector's own mask read with the frame (``Frame.pixel_mask``), True = masked.

    Returns
    -------
    (float, {"specular", "yoneda"}) or None
        Incidence angle in degrees and the feature it was read from.
    """
    pixels = ValidPixels.of_frame(data, saturation_counts=saturation_counts, pixel_mask=pixel_mask)
    yoneda = plan.yoneda
    spec_band = plan.specular
    if spec_band.columns.size:
        spec, _ = spec_band.profile(data, pixels)
        searched = spec_band.search & np.isfinite(spec)
        if np.any(searched):
            spot = int(np.argmax(np.where(searched, spec, -np.inf)))
            level = float(np.median(spec[searched]))
            frame_row = spec_band.row_start + spot
            if yoneda.columns.size:  # the Yoneda band is as bright beside the beam
                inside = yoneda.row_start <= frame_row < yoneda.row_stop
                row_mask = (
                    yoneda.masked[frame_row - yoneda.row_start : frame_row - yoneda.row_start + 1]
                    if inside
                    else np.zeros((1, yoneda.columns.size), dtype=bool)
                )
                beside = _band_profile(
                    data, frame_row, frame_row + 1, yoneda.columns, row_mask, pixels
                )
                beside_level = float(beside[0][0])
                level = max(level, 0.0 if math.isnan(beside_level) else beside_level)
            if spec[spot] >= MIN_SPOT_CONTRAST * (level + 1):
                vertex = _vertex(spec, spot, level)
                elevation = float(np.interp(vertex, np.arange(spec.size), spec_band.elevation_rad))
                return math.degrees(elevation / 2), "specular"
    if yoneda.columns.size == 0:
        return None
    side, side_sigma = yoneda.profile(data, pixels)
    peak = _strongest_peak(side, yoneda.search)
    if peak is None:
        return None
    lo, hi = max(0, peak - 15), min(side.size, peak + 16)
    surroundings = float(np.nanmin(side[lo:hi]))
    if not side[peak] - surroundings >= MIN_YONEDA_SIGNIFICANCE * side_sigma[peak]:
        return None
    vertex = _vertex(side, peak, surroundings)
    rows = np.arange(side.size)
    elevation = float(np.interp(vertex, rows, yoneda.elevation_rad))
    ratio = math.sin(math.radians(plan.critical_angle_deg)) / float(
        np.interp(vertex, rows, yoneda.reach)
    )
    alpha_deg = math.degrees(elevation - math.asin(min(1.0, ratio)))
    return (alpha_deg, "yoneda") if alpha_deg > 0 else None


def frame_incidence_flag(
    data: NDArray[Any],
    plan: FrameIncidencePlan,
    *,
    saturation_counts: float | None = None,
    pixel_mask: NDArray[np.bool_] | None = None,
) -> str | None:
    """A flag when the incidence angle seen on a frame disagrees with the given one.

    Parameters
    ----------
    data : ndarray of shape (rows, cols)
        The frame as stored, in counts.
    plan : FrameIncidencePlan
        From :func:`plan_frame_incidence`.

    Returns
    -------
    str or None
        ``"incidence_mismatch: measured 0.25 deg vs given 0.30 deg (specular spot)"``
        beyond the method's tolerance; None when they agree or nothing was seen.
    """
    measured = measure_frame_incidence(
        data, plan, saturation_counts=saturation_counts, pixel_mask=pixel_mask
    )
    if measured is None:
        return None
    alpha_deg, method = measured
    if abs(alpha_deg - plan.nominal_deg) <= plan.tolerance_deg[method]:
        return None
    return (
        f"{FLAG_INCIDENCE_MISMATCH}: measured {alpha_deg:.2f} deg vs given "
        f"{plan.nominal_deg:.2f} deg ({_feature(method)})"
    )


def _band_profile(
    data: NDArray[Any],
    row_start: int,
    row_stop: int,
    columns: NDArray[np.intp],
    masked: NDArray[np.bool_],
    pixels: ValidPixels,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Mean of the valid pixels of rows `row_start`:`row_stop` over `columns`, its Poisson error.

    Valid: not in `masked` (shape (row_stop - row_start, columns.size)), and a count by
    `pixels`. Rows without a valid pixel are NaN. Compiled for the frame's own data type:
    the check runs on every frame, and a gather of the band as float plus numpy's masked
    sums cost ten times more. Types the compiled loop does not take (other byte order,
    float16, bool) are converted to float first.
    """
    frame = np.asarray(data)
    if frame.dtype not in _KERNEL_PIXEL_TYPES:
        frame = frame.astype(np.float64)
    return _band_profile_kernel(
        frame,
        row_start,
        row_stop,
        np.asarray(columns, dtype=np.intp),
        masked,
        pixels.limit,
        pixels.pixel_mask,
    )


#: Pixel types the compiled band profile takes as they are (native byte order).
_KERNEL_PIXEL_TYPES = frozenset(
    np.dtype(t)
    for t in (
        np.int8,
        np.int16,
        np.int32,
        np.int64,
        np.uint8,
        np.uint16,
        np.uint32,
        np.uint64,
        np.float32,
        np.float64,
    )
)


@numba.njit(cache=True)
def _band_profile_kernel(
    data: NDArray[Any],
    row_start: int,
    row_stop: int,
    columns: NDArray[np.intp],
    masked: NDArray[np.bool_],
    limit: float,
    pixel_mask: NDArray[np.bool_],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Row means and Poisson errors of :func:`_band_profile`, shape (rows,) each."""
    n_rows = row_stop - row_start
    with_mask = pixel_mask.shape[0] > 0
    profile = np.empty(n_rows)
    sigma = np.empty(n_rows)
    for r in range(n_rows):
        row = row_start + r
        total = 0.0
        n_valid = 0
        for c in range(columns.size):
            column = columns[c]
            value = float(data[row, column])
            if (
                not masked[r, c]
                and 0.0 <= value < limit  # NaN fails the comparison
                and not (with_mask and pixel_mask[row, column])
            ):
                total += value
                n_valid += 1
        if n_valid == 0:
            profile[r] = np.nan
            sigma[r] = np.nan
        else:
            profile[r] = total / n_valid
            sigma[r] = math.sqrt(max(total, 1.0)) / n_valid
    return profile, sigma


def _vertex(profile: NDArray[np.float64], index: int, background: float) -> float:
    """Sub-pixel peak position: a Gaussian (else a parabola) through three rows."""
    if not 0 < index < profile.size - 1:
        return float(index)
    left, centre, right = (float(v) - background for v in profile[index - 1 : index + 2])
    if not all(math.isfinite(v) for v in (left, centre, right)):
        return float(index)
    if left > 0 and centre > 0 and right > 0:
        left, centre, right = math.log(left), math.log(centre), math.log(right)
    denominator = left - 2 * centre + right
    if not denominator < 0:
        return float(index)
    return float(index + 0.5 * (left - right) / denominator)


@dataclass(frozen=True, slots=True)
class _Beam:
    row: float
    col: float
    row_err: float
    found: bool
    on_frame: bool
    masked: bool
    description: str


def _valid_frame(
    data: NDArray[np.floating], geometry: GIGeometry, mask: NDArray[np.bool_] | None
) -> NDArray[np.float64]:
    """The frame as float with NaN on masked, negative and non-finite pixels."""
    shape = geometry.detector.shape
    if data.shape != shape or (mask is not None and mask.shape != shape):
        msg = (
            f"frame of shape {data.shape} (mask {None if mask is None else mask.shape}) does "
            f"not match detector {geometry.detector.detector} of shape {shape}; check the PONI"
        )
        raise GeometryError(msg)
    frame = np.array(data, dtype=np.float64)
    invalid = ~np.isfinite(frame) | (frame < 0)
    if mask is not None:
        invalid |= np.asarray(mask, dtype=bool)
    frame[invalid] = np.nan
    return frame


def _elevation_maps(
    maps: QMaps, geometry: GIGeometry
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Elevation above the incident beam (rad) and sqrt(n_up^2 + n_beam^2) per pixel."""
    return geometry.elevation_rad(maps)


def _pixel_angle_rad(geometry: GIGeometry) -> float:
    det = geometry.detector.pyfai_detector()
    return float(max(det.pixel1, det.pixel2)) / geometry.detector.distance_m


def _up_sign(elevation_rad: NDArray[np.float64]) -> int:
    """-1 when the elevation grows towards row 0 (the usual picture), else +1."""
    return -1 if float(np.nanmedian(np.diff(elevation_rad, axis=0))) < 0 else 1


def _find_direct_beam(frame: NDArray[np.float64], geometry: GIGeometry, *, search_px: int) -> _Beam:
    row0, col0 = direct_beam_pixel(geometry)
    n_rows, n_cols = frame.shape
    on_frame = -0.5 <= row0 <= n_rows - 0.5 and -0.5 <= col0 <= n_cols - 0.5
    if not on_frame:
        return _Beam(row0, col0, 0.0, False, False, False, "direct beam off the detector")
    r_lo, r_hi = max(0, round(row0) - search_px), min(n_rows, round(row0) + search_px + 1)
    c_lo, c_hi = max(0, round(col0) - search_px), min(n_cols, round(col0) + search_px + 1)
    window = frame[r_lo:r_hi, c_lo:c_hi]
    core = frame[
        max(0, round(row0) - 1) : round(row0) + 2, max(0, round(col0) - 1) : round(col0) + 2
    ]
    if np.all(np.isnan(core)):
        return _Beam(row0, col0, 0.0, False, True, True, "direct beam masked")
    wide = frame[
        max(0, r_lo - 2 * search_px) : r_hi + 2 * search_px,
        max(0, c_lo - 2 * search_px) : c_hi + 2 * search_px,
    ]
    background = float(np.nanmedian(wide))
    r_win, c_win = np.unravel_index(np.nanargmax(window), window.shape)
    r_max, c_max = int(r_win) + r_lo, int(c_win) + c_lo
    if not frame[r_max, c_max] >= MIN_SPOT_CONTRAST * (background + 1):
        return _Beam(
            row0,
            col0,
            0.0,
            False,
            True,
            False,
            f"no direct beam seen at row {row0:.1f}, col {col0:.1f} where the PONI puts it "
            "(its position was used; run the orientation check)",
        )
    row_profile, row_sigma = _column_profile(frame, _band(c_max, 2, n_cols))
    col_profile, col_sigma = _column_profile(frame.T, _band(r_max, 2, n_rows))
    row_fit = _refine_peak(row_profile, row_sigma, r_max)
    col_fit = _refine_peak(col_profile, col_sigma, c_max)
    if row_fit is None or col_fit is None:
        return _Beam(
            float(r_max), float(c_max), 0.5, True, True, False, "direct beam found (not fitted)"
        )
    return _Beam(row_fit[0], col_fit[0], row_fit[1], True, True, False, "direct beam found")


def _clip(index: float, size: int) -> float:
    return float(min(max(index, 0.0), size - 1.0))


def _band(center: float, half_width: int, size: int) -> NDArray[np.intp]:
    lo, hi = max(0, round(center) - half_width), min(size, round(center) + half_width + 1)
    return np.arange(lo, hi)


def _side_bands(center: float, inner: int, outer: int, size: int) -> NDArray[np.intp]:
    offsets = np.arange(inner, outer + 1)
    columns = np.concatenate([round(center) - offsets, round(center) + offsets])
    return np.unique(columns[(columns >= 0) & (columns < size)])


def _column_profile(
    frame: NDArray[np.float64], columns: NDArray[np.intp]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Mean over `columns` of the valid pixels of each row, and its Poisson error."""
    block = frame[:, columns]
    n_valid = np.sum(np.isfinite(block), axis=1)
    total = np.nansum(block, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        profile = np.where(n_valid > 0, total / n_valid, np.nan)
        sigma = np.where(n_valid > 0, np.sqrt(np.maximum(total, 1.0)) / n_valid, np.nan)
    return profile, sigma


def _strongest_peak(profile: NDArray[np.float64], allowed: NDArray[np.bool_]) -> int | None:
    """Index of the most prominent local maximum of `profile` that lies inside `allowed`.

    Rows without a valid pixel are bridged by linear interpolation, so that the edges of
    a detector gap do not look like maxima. Maxima and prominences as
    ``scipy.signal.find_peaks(profile, prominence=0)`` defines them (a flat top counts once,
    at its middle; the tests keep scipy as the oracle), compiled: scipy's call costs more
    than the rest of the per-frame check.
    """
    finite = np.isfinite(profile)
    if np.count_nonzero(finite) < 3:
        return None
    rows = np.arange(profile.size)
    filled = np.interp(rows, rows[finite], profile[finite])
    best = _most_prominent_peak(filled, allowed & finite)
    return None if best < 0 else int(best)


@numba.njit(cache=True)
def _most_prominent_peak(values: NDArray[np.float64], allowed: NDArray[np.bool_]) -> int:
    """Index of the most prominent local maximum where `allowed` (the first of equals); -1."""
    n = values.size
    best, best_prominence = -1, -np.inf
    i = 1
    while i < n - 1:
        if values[i - 1] < values[i]:
            ahead = i + 1  # past a flat top
            while ahead < n - 1 and values[ahead] == values[i]:
                ahead += 1
            if values[ahead] < values[i]:
                peak = (i + ahead - 1) // 2
                height = values[peak]
                left_min = height
                j = peak
                while j >= 0 and values[j] <= height:
                    left_min = min(left_min, values[j])
                    j -= 1
                right_min = height
                j = peak
                while j < n and values[j] <= height:
                    right_min = min(right_min, values[j])
                    j += 1
                prominence = height - max(left_min, right_min)
                if allowed[peak] and prominence > best_prominence:
                    best, best_prominence = peak, prominence
                i = ahead
        i += 1
    return best


def _refine_peak(
    profile: NDArray[np.float64], sigma: NDArray[np.float64], index: int
) -> tuple[float, float, float, float] | None:
    """Gaussian + constant fit around `index`: (centre, its error, height, its error)."""
    height = profile[index]
    base = float(np.nanmin(profile[max(0, index - 30) : index + 31]))
    half = base + (height - base) / 2
    left = index
    while left > 0 and profile[left - 1] >= half:
        left -= 1
    right = index
    while right < profile.size - 1 and profile[right + 1] >= half:
        right += 1
    half_width = int(np.clip(2 * (right - left + 1), 4, 30))
    lo, hi = max(0, index - half_width), min(profile.size, index + half_width + 1)
    x = np.arange(lo, hi, dtype=np.float64)
    y, s = profile[lo:hi], sigma[lo:hi]
    keep = np.isfinite(y) & np.isfinite(s) & (s > 0)
    if np.count_nonzero(keep) < 5:
        return None
    model = lmfit.models.GaussianModel() + lmfit.models.ConstantModel()
    params = model.make_params(
        center={"value": float(index), "min": lo, "max": hi - 1},
        sigma={"value": max(0.5, (right - left + 1) / 2.355), "min": 0.2, "max": half_width},
        amplitude={"value": (height - base) * 2.5 * max(1.0, (right - left + 1) / 2.355)},
        c={"value": base},
    )
    fit = model.fit(y[keep], params, x=x[keep], weights=1 / s[keep])
    if not (fit.success and fit.errorbars):
        return None
    center, peak_height = fit.params["center"], fit.params["height"]
    if center.stderr is None or peak_height.stderr is None:
        return None
    return (
        float(center.value),
        float(center.stderr),
        float(peak_height.value),
        float(peak_height.stderr),
    )


def _sample(values: NDArray[np.float64], row: float, col: float) -> float:
    """Bilinear interpolation of a per-pixel map at a fractional pixel."""
    return float(map_coordinates(values, [[row], [col]], order=1, mode="nearest")[0])


def _profile_value(values: NDArray[np.float64], columns: NDArray[np.intp], row: float) -> float:
    """Mean over `columns` of a per-pixel map, linearly interpolated at a fractional row."""
    profile = np.mean(values[:, columns], axis=1)
    return float(np.interp(row, np.arange(profile.size), profile))


def _row_at(
    elevation_rad: NDArray[np.float64], columns: NDArray[np.intp], target_rad: float
) -> float | None:
    """Fractional row where the band's mean elevation reaches `target_rad`, if on the frame."""
    profile = np.mean(elevation_rad[:, columns], axis=1)
    order = np.argsort(profile)
    if not profile[order[0]] <= target_rad <= profile[order[-1]]:
        return None
    return float(np.interp(target_rad, profile[order], np.arange(profile.size)[order]))


def _feature(method: IncidenceMethod) -> str:
    return "specular spot" if method == "specular" else "Yoneda maximum"
