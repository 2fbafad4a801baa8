"""The first screen of a study's summary page as a PNG, for docs/report.md (headless Chromium).

    python docs/summary_screenshot.py                                   # results/demo/report/summary.html
    python docs/summary_screenshot.py --page results/real/report/summary.html --out docs/images/real.png
    python docs/summary_screenshot.py --fixture                         # the test fixture's page (invented numbers)

Needs Chromium (Debian: apt-get install chromium). The page is opened from a temporary copy of the file alone,
so the screenshot also shows that it needs nothing beside it. ``--fixture`` draws the page of
``nidsflow.fixtures.make_summary_inputs`` (the tests' inputs, not results) and titles it so.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def fixture_page(folder: Path) -> Path:
    from nidsflow.fixtures import make_summary_inputs
    from nidsflow.report import draw_summary_figures, write_summary

    p = make_summary_inputs(folder)
    summary = draw_summary_figures(folder / "report" / "figures", p["intervals"], p["within_csv"], "demo_a",
                                   p["alerts"], p["loss_files"])
    page = folder / "report" / "summary.html"
    write_summary(folder / "report" / "summary.md", [str(p["within_md"])], [str(f) for f in p["figures"]], [], [],
                  title="nidsflow results: test fixture (invented numbers, not results)", out_html=page,
                  summary=summary)
    return page


def screenshot(page: Path, out: Path, width: int = 1400, height: int = 1000) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("Chromium not found (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "summary.html"
        shutil.copyfile(page, copy)
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--window-size={width},{height}", "--virtual-time-budget=5000",
                        f"--screenshot={out.resolve()}", copy.as_uri()], check=True, capture_output=True, timeout=120)
    print(f"{out}: first {width}x{height} px of {page}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--page", type=Path, default=REPO / "results" / "demo" / "report" / "summary.html")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "images" / "summary_first_screen.png")
    ap.add_argument("--fixture", action="store_true", help="the test fixture's page instead of a study's")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=1000)
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        page = fixture_page(Path(tmp)) if a.fixture else a.page
        if not page.exists():
            sys.exit(f"{page}: no summary page; run the study first (snakemake --cores 2) or pass --fixture")
        screenshot(page, a.out, a.width, a.height)


if __name__ == "__main__":
    main()
