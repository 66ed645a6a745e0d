"""`dunet label` end to end in a real headless browser (Debian's Chromium driven by Selenium): points placed,
moved and hidden on 3 frames survive a killed server; and the server's guards: token, `..`, 127.0.0.1 only,
one labeller per project, labels of vanished images kept."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from dunet.data.readers import read_dlc, read_dlc_labels
from dunet import DunetError
from dunet.cli import main
from dunet.labeller import HIDDEN_NAME, LOCK_NAME, Labeller, Lock, make_server
from dunet.project import open_project
from tests.conftest import REPO
from tests.project.helpers import POINTS, small_project

CHROMIUM, CHROMEDRIVER = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver") or "/usr/bin/chromedriver"
FRAMES = [f"labeled-data/m4s1/img{n:04d}.png" for n in range(3)]


# --- the server in this process: guards -------------------------------------------------------------


@pytest.fixture
def served(tmp_path):
    """(server, project root, token) for a small project, served from a thread of this process."""
    root = small_project(tmp_path)
    server = make_server(Labeller(open_project(root)), port=0, token="secret-token")
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server, root, "secret-token"
    server.shutdown()
    server.server_close()


def request(server, method, path, body=None, token=None, host=None):
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    headers = {"Host": host or f"127.0.0.1:{server.server_address[1]}"}
    if token:
        headers["X-Dunet-Token"] = token
    connection.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = connection.getresponse()
    return response.status, response.read()


def test_writes_without_the_page_token_are_refused(served):
    server, root, token = served
    status, page = request(server, "GET", "/")
    assert status == 200 and b'content="secret-token"' in page
    change = {"frame": FRAMES[0], "points": {"snout": [5, 6]}}
    for wrong in (None, "guessed"):
        assert request(server, "POST", "/api/label", change, token=wrong)[0] == 403
        assert request(server, "GET", "/api/state", token=wrong)[0] == 403
    assert not (root / "labeled-data/m4s1/CollectedData_dunet.csv").exists()
    # A page of another site that resolves its own name to 127.0.0.1 sends its own Host, even with the token.
    assert request(server, "POST", "/api/label", change, token=token, host="evil.example:80")[0] == 403
    assert request(server, "POST", "/api/label", change, token=token)[0] == 200
    assert read_dlc_labels(root / "labeled-data/m4s1/CollectedData_dunet.csv").frames[FRAMES[0]][0].tolist() == [5, 6]


@pytest.mark.parametrize("path", ["/image/../config.yaml", "/image/labeled-data/../config.yaml",
                                  "/image/%2e%2e/config.yaml", "/..%2fconfig.yaml",
                                  "/image//etc/passwd", "/image/%2Fetc%2Fpasswd", "/static/../__init__.py"])
def test_nothing_outside_the_project_is_served(served, path):
    server, root, token = served
    status, body = request(server, "GET", path, token=token)
    assert status == 403 and b"refused" in body


def test_a_path_outside_is_not_found(served):
    server, root, token = served
    status, body = request(server, "GET", "//etc/passwd", token=token)  # http.server reads it as /etc/passwd
    assert status == 404 and b"root:" not in body


def test_only_the_project_frames_are_served(served):
    server, root, token = served
    assert request(server, "GET", "/image/" + FRAMES[1])[0] == 200
    assert request(server, "GET", "/image/config.yaml")[0] == 404  # inside the project, but not a frame


def test_listens_on_127_0_0_1_only(served):
    server, root, token = served
    port = server.server_address[1]
    assert server.server_address[0] == "127.0.0.1"
    # Linux routes all of 127/8 to the loopback device: a server bound to every address would answer 127.0.0.2.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.2", port), timeout=2).close()
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


def test_two_writers_on_one_frame_keep_both_labels(tmp_path):
    root = small_project(tmp_path)
    first, second = Labeller(open_project(root)), Labeller(open_project(root))
    first.set_points(FRAMES[0], {"snout": [1, 2]})
    second.set_points(FRAMES[0], {"tailbase": [3, 4]})  # knows nothing of the snout, must not erase it
    first.set_points(FRAMES[0], {"leftear": "hidden"})
    saved = first.state()["frames"][0]["points"]
    assert saved == {"snout": [1, 2], "leftear": "hidden", "rightear": None, "tailbase": [3, 4]}


def test_labels_of_a_vanished_image_are_kept_and_reported(tmp_path, capsys):
    root = small_project(tmp_path)
    Labeller(open_project(root)).set_points(FRAMES[2], {"snout": [7, 8]})
    (root / FRAMES[2]).unlink()
    labeller = Labeller(open_project(root))
    assert labeller.missing_images() == [FRAMES[2]]
    labeller.set_points(FRAMES[0], {"snout": [1, 1]})
    frames = read_dlc_labels(root / "labeled-data/m4s1/CollectedData_dunet.csv").frames
    assert frames[FRAMES[2]][0].tolist() == [7, 8] and frames[FRAMES[0]][0].tolist() == [1, 1]
    assert main(["project", "show", str(root)]) == 0
    assert "1 labelled frames have no image (labels kept)" in capsys.readouterr().out


def test_model_suggestions_fill_only_what_is_not_labelled(served):
    server, root, token = served
    labeller = Labeller(open_project(root), predict=lambda path: {"snout": [11.0, 12.0], "tailbase": [1.0, 2.0]})
    labeller.set_points(FRAMES[0], {"snout": [3, 4]})
    assert labeller.suggestions(FRAMES[0]) == {"snout": [11.0, 12.0], "tailbase": [1.0, 2.0]}
    assert labeller.state()["model"] is True
    assert labeller.state()["frames"][0]["points"]["snout"] == [3, 4]  # the page shows a suggestion only for a null


def test_a_second_labeller_is_refused_and_a_dead_ones_lock_taken_over(tmp_path, capsys):
    root = small_project(tmp_path)
    (root / LOCK_NAME).write_text(f"{os.getpid()}\n")  # a live process serves the project
    assert main(["label", str(root), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert f"another labeller (pid {os.getpid()}) is serving this project" in err and len(err.splitlines()) == 1
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (root / LOCK_NAME).write_text(f"{dead.pid}\n")
    lock = Lock(root)
    lock.acquire()
    assert (root / LOCK_NAME).read_text().strip() == str(os.getpid())
    lock.release()
    assert not (root / LOCK_NAME).exists()


def test_a_port_in_use_is_one_line(tmp_path, capsys):
    root = small_project(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["label", str(root), "--port", str(port)]) == 2
    assert capsys.readouterr().err.strip() == f"dunet label: error: port {port} is in use; choose another with --port"
    assert not (root / LOCK_NAME).exists()


# --- the page in a real browser ------------------------------------------------------------------------


def start_labeller(root: Path) -> tuple[subprocess.Popen, str]:
    """`dunet label ROOT --port 0` as a user runs it; its URL once it listens."""
    server = subprocess.Popen([sys.executable, "-m", "dunet", "label", str(root), "--port", "0"], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    for line in server.stdout:
        found = re.search(r"http://127\.0\.0\.1:\d+/", line)
        if found:
            return server, found.group(0)
        if time.monotonic() > deadline:
            break
    server.kill()
    raise AssertionError(f"dunet label did not start: {line!r}")


@pytest.fixture(scope="module")
def browser():
    if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
        pytest.skip("Chromium is not installed (apt-get install chromium chromium-driver; .ci/run does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the page's own errors, checked below
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1100,720",
                 "--force-device-scale-factor=1", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_script_timeout(20)
    yield driver
    driver.quit()


def open_page(driver, url):
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.body.dataset.ready") == "yes")


def wait_saved(driver):
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 20).until(lambda d: d.execute_script("return window.labeller.saved()"))


def page_labels(driver) -> dict:
    return {f["key"]: f["points"] for f in driver.execute_script("return window.labeller.state.frames")}


@pytest.mark.slow
def test_labels_placed_moved_and_hidden_in_the_browser_survive_a_killed_server(browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.actions.wheel_input import ScrollOrigin
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    root = small_project(tmp_path)
    server, url = start_labeller(root)
    try:
        open_page(browser, url)
        canvas = browser.find_element(By.ID, "view")

        def click(x, y):  # offsets from the canvas centre, in screen pixels
            ActionChains(browser).move_to_element_with_offset(canvas, x, y).click().perform()

        def drag(x, y, dx, dy):
            ActionChains(browser).move_to_element_with_offset(canvas, x, y).click_and_hold() \
                .move_by_offset(dx // 2, dy // 2).move_by_offset(dx - dx // 2, dy - dy // 2).release().perform()

        def keys(*pressed):
            ActionChains(browser).send_keys(*pressed).perform()

        def on_frame(n):
            WebDriverWait(browser, 20).until(lambda d: d.find_element(By.ID, "frame-name").text == FRAMES[n])

        def image_xy(x, y):  # where a click at canvas-centre offset (x, y) lands in image pixels
            return browser.execute_script(
                "const v = window.labeller.state.view, c = document.getElementById('view');"
                "return [(c.clientWidth / 2 + arguments[0] - v.x) / v.scale - 0.5,"
                "        (c.clientHeight / 2 + arguments[1] - v.y) / v.scale - 0.5];", x, y)

        on_frame(0)
        click(-100, -50)   # snout
        click(-60, -80)    # leftear
        click(-60, -20)    # rightear
        keys("h")          # tailbase: not visible
        drag(-100, -50, 30, 60)  # move the snout
        rightear, snout = image_xy(-60, -20), image_xy(-70, 10)
        pixel = 1 / browser.execute_script("return window.labeller.state.view.scale")  # one screen pixel
        keys(Keys.ARROW_RIGHT)
        on_frame(1)
        click(50, 50)      # snout
        click(80, 20)      # leftear
        keys("z")          # undo: leftear unlabelled again
        keys("2", "h")     # leftear: not visible
        click(90, 90)      # rightear; tailbase stays to be labelled
        keys(Keys.ARROW_RIGHT)
        on_frame(2)
        for x, y in [(0, 0), (20, -20), (20, 20), (-120, 0)]:
            click(x, y)
        drag(-120, 0, -30, 10)  # move the tailbase
        wait_saved(browser)
        left = page_labels(browser)
        assert browser.find_element(By.ID, "progress").text.endswith("left: 1 frames, 1 points")
        scale = browser.execute_script("return window.labeller.state.view.scale")
        ActionChains(browser).scroll_from_origin(ScrollOrigin.from_element(canvas, 0, 0), 0, -240).perform()
        WebDriverWait(browser, 5).until(lambda d: d.execute_script("return window.labeller.state.view.scale") > scale)
        assert page_labels(browser) == left  # zooming changes no label
        assert [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
    finally:
        server.send_signal(signal.SIGKILL)  # as a crash: no chance to tidy up
        server.wait(10)

    assert [left[f]["tailbase"] for f in FRAMES] == ["hidden", None, left[FRAMES[2]]["tailbase"]]
    assert left[FRAMES[1]]["leftear"] == "hidden" and all(isinstance(v, list) for v in left[FRAMES[2]].values())
    assert np.allclose(left[FRAMES[0]]["rightear"], rightear, atol=pixel)
    assert np.allclose(left[FRAMES[0]]["snout"], snout, atol=pixel)

    # On disk as DeepLabCut reads it: empty cells for hidden and unlabelled points.
    csv = root / "labeled-data/m4s1/CollectedData_dunet.csv"
    assert len(read_dlc(csv).samples) == 3
    disk = read_dlc_labels(csv).frames
    for key in FRAMES:
        for j, name in enumerate(POINTS):
            value = left[key][name]
            assert (np.allclose(disk[key][j], value) if isinstance(value, list) else np.isnan(disk[key][j]).all())
    assert json.loads((root / HIDDEN_NAME).read_text())["hidden"] == {FRAMES[0]: ["tailbase"], FRAMES[1]: ["leftear"]}

    server, url = start_labeller(root)  # takes over the dead server's lock
    try:
        open_page(browser, url)
        assert page_labels(browser) == left
        # The command as users run it: 127.0.0.1 only, and no write without the page's token.
        port = int(url.rsplit(":", 1)[1].strip("/"))
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.2", port), timeout=2).close()
        forged = browser.execute_script(
            "return fetch('/api/label', {method: 'POST', body: JSON.stringify("
            "{frame: arguments[0], points: {snout: [1, 1]}})}).then(r => r.status)", FRAMES[0])
        assert forged == 403 and read_dlc_labels(csv).frames[FRAMES[0]][0].tolist() == left[FRAMES[0]]["snout"]
    finally:
        server.terminate()
        server.wait(10)
    assert not (root / LOCK_NAME).exists()  # stopped as by Ctrl-C, the labeller takes its lock away


@pytest.mark.slow
def test_a_trained_run_prefills_the_points_it_shares_with_the_project(tmp_path):
    import dunet
    from dunet.engine.trainer import train
    from dunet.labeller import model_predictor
    from tests.engine.test_trainer import fast_config

    run = tmp_path / "run"
    train(fast_config(**{"optim.epochs": 1}), run, log=lambda *_: None)
    names = list(dunet.load(run, backend="torch").names)
    project = open_project(small_project(tmp_path, points=["snout", names[0], names[5]]))
    labeller = Labeller(project, model_predictor(str(run), project.points))
    suggested = labeller.suggestions(FRAMES[0])
    assert sorted(suggested) == sorted([names[0], names[5]]) and all(len(xy) == 2 for xy in suggested.values())
    with pytest.raises(DunetError, match="none of the project's points"):
        model_predictor(str(run), POINTS)
