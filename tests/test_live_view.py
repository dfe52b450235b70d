"""The live page of `gixs watch --serve` in a real browser (Debian's headless chromium)."""

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.watch_helpers import demo_frames, finish, make_run_folder, watch, write_at_rate

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() and os.environ.get("CI") != "true",
    reason="Debian's chromium is not installed (.ci/run installs it; in CI this test runs)",
)

COUNT_JS = """
const docs = (window.Bokeh && Bokeh.documents) || [];
if (!docs.length) return -1;
const source = docs[0].get_model_by_name(arguments[0]);
return source ? source.data[arguments[1]].length : -1;
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}")


def test_live_page_shows_points_that_grow_and_loads_nothing_from_outside(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    config = make_run_folder(tmp_path / "run")
    out = tmp_path / "live"
    port = free_port()
    write_at_rate(demo_frames(26, 27), config.parent, rate_hz=50)
    proc = watch(config, out, "--serve", str(port))
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1180,1240"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    writer = threading.Thread(
        target=write_at_rate, args=(demo_frames(27, 34), config.parent), kwargs={"rate_hz": 1.0}
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for(lambda: "live view on" in Path(proc.log.name).read_text(), 120, "the server")
        driver.get(url)
        first = wait_for(
            lambda: max(0, driver.execute_script(COUNT_JS, "rods_source", "q1")), 60, "points"
        )
        writer.start()
        grown = wait_for(
            lambda: driver.execute_script(COUNT_JS, "rods_source", "q1") > first, 60, "more points"
        )
        assert grown
        wait_for(lambda: driver.execute_script(COUNT_JS, "peaks_source", "fwhm") > 0, 30, "FWHM")
        wait_for(
            lambda: driver.execute_script(COUNT_JS, "gisaxs_cut_source", "q_par") > 0, 30, "cut"
        )
        wait_for(lambda: driver.execute_script(COUNT_JS, "map_source", "image") > 0, 30, "2-D map")
        loaded = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
        )
        assert loaded  # bokeh's scripts
        outside = [u for u in loaded if not u.startswith(f"http://127.0.0.1:{port}/")]
        assert outside == []
        writer.join()
        shot = tmp_path / "live_view.png"
        time.sleep(2)
        driver.save_screenshot(str(shot))
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if os.environ.get("GIXS_LIVE_SCREENSHOT"):
            shutil.copy(shot, os.environ["GIXS_LIVE_SCREENSHOT"])
    finally:
        driver.quit()
        if writer.is_alive():
            writer.join()
        proc.terminate()
        finish(proc, 60)
