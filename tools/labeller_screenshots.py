"""The labeller's screenshots in docs/images/ (docs/own_data_loop.md), taken in headless Chromium:

    .venv/bin/python tools/labeller_screenshots.py [--data ../shared/data/dlc_openfield]

A throwaway project of 10 dlc_openfield frames: the first 7 carry the project's own labels, the 8th two of its four,
as if a user were half-way through it.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
from pathlib import Path

from PIL import Image

from dunet.data.readers import read_dlc_labels
from dunet.labeller import Labeller, make_server
from dunet.project import new_project

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "dlc_openfield")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    args = parser.parse_args()
    source = args.data / "labeled-data" / "m4s1"
    truth = read_dlc_labels(source / "CollectedData_Pranav.csv")
    with tempfile.TemporaryDirectory() as folder:
        project = new_project(Path(folder) / "openfield", truth.names,
                              [("snout", "leftear"), ("snout", "rightear"), ("leftear", "tailbase"),
                               ("rightear", "tailbase")], scorer="Pranav")
        (project.root / "labeled-data" / "m4s1").mkdir()
        labels = project.labels("m4s1")
        for n in range(10):
            key = f"labeled-data/m4s1/img{n:04d}.png"
            shutil.copy(args.data / key, project.root / key)
            if n < 8:
                labels.frames[key] = truth.frames[key].copy()
        labels.frames[key.replace("0009", "0007")][2:] = float("nan")
        project.save_labels("m4s1", labels)
        server = make_server(Labeller(project), port=0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            shoot(f"http://127.0.0.1:{server.server_address[1]}/", args.out)
        finally:
            server.shutdown()


def shoot(url: str, out: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.wheel_input import ScrollOrigin
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--window-size=1100,760", "--force-device-scale-factor=1"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"))
    try:
        driver.get(url)
        WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.body.dataset.ready") == "yes")
        save(driver, out / "labeller.png")
        # Zoomed in on the mouse (its snout), as one labels an ear.
        canvas = driver.find_element(By.ID, "view")
        x, y = driver.execute_script(
            "const S = window.labeller.state, p = S.frames[S.frame].points.snout, c = document.getElementById('view');"
            "return [S.view.x + (p[0] + 0.5) * S.view.scale - c.clientWidth / 2,"
            "        S.view.y + (p[1] + 0.5) * S.view.scale - c.clientHeight / 2];")
        origin = ScrollOrigin.from_element(canvas, int(x), int(y))
        for _ in range(2):
            ActionChains(driver).scroll_from_origin(origin, 0, -300).perform()
        save(driver, out / "labeller_zoom.png")
    finally:
        driver.quit()


def save(driver, path: Path) -> None:
    driver.save_screenshot(str(path))
    # 256 colours: a small file, the points' colours kept (octree keeps rare saturated colours, median cut not).
    Image.open(path).convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE).save(path, optimize=True)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
