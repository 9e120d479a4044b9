"""The page rendered by headless Chromium: every image loads, and a screenshot is drawn.

CI must install the browser (`apt-get update && apt-get install -y chromium`); without it this
test fails on purpose, so that the check is never skipped silently.
"""
import re
import subprocess
from pathlib import Path

import pytest
from report_testkit import PNG_SIGNATURE, open_png

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Written into a copy of the page: once everything has loaded, count the images that decoded.
PROBE = """<script>
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var loaded = images.filter(function (img) { return img.complete && img.naturalWidth > 0; });
  document.body.dataset.loaded = loaded.length + "/" + images.length;
});
</script>"""


def _chromium(tmp_path, *args):
    if not CHROMIUM.exists():
        pytest.fail("headless Chromium is needed for this test: install it with "
                    "`apt-get update && apt-get install -y chromium`")
    cmd = [str(CHROMIUM), *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_every_image_loads_in_headless_chromium(iris_report, tmp_path):
    page = iris_report.read_text(encoding="utf-8")
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    done = _chromium(tmp_path, "--dump-dom", probe.as_uri())
    found = re.search(r'<body[^>]*data-loaded="(\d+)/(\d+)"', done.stdout)
    assert found, f"the probe did not run; chromium said: {done.stderr[-2000:]}"
    loaded, total = int(found.group(1)), int(found.group(2))
    assert total == page.count("<img ") > 0
    assert loaded == total


def test_screenshot_of_the_page(diabetes_report, tmp_path):
    shot = tmp_path / "page.png"
    done = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,3000", diabetes_report.as_uri())
    assert shot.is_file(), done.stderr[-2000:]
    data = shot.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    image = open_png(data).convert("RGB")
    assert image.size == (1200, 3000)
    assert len(image.getcolors(maxcolors=1 << 20)) > 50  # text and plots were drawn, not a blank page
