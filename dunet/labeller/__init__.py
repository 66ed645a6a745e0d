"""`dunet label`: a local web page to label a project's frames, saving into its CollectedData CSVs.

The server listens on 127.0.0.1 only and serves three things: the page (static/, shipped with the package), the
project's frames (only images that are frames of the project) and a small JSON API. Every API call must carry
the random token written into the page, so no other web page or program can write labels through it.

Saving: every change is one request that re-reads the video's CSV, changes the named points and writes the
file back atomically (temporary file + os.replace), so a killed server loses at most the change in flight.
One labeller per project: a lock file holding the server's pid refuses a second one; a lock left by a dead
process is taken over.

DeepLabCut's CSV has one way to say "no point here": an empty cell. Which empty points the user marked
"not visible" (rather than not labelled yet) is kept beside it in dunet-labeller.json, so that progress and
a model's suggestions leave them alone.
"""

from __future__ import annotations

import errno
import hmac
import http.server
import json
import math
import os
import secrets
import threading
import urllib.parse
from importlib import resources
from pathlib import Path

from dunet import DunetError
from dunet.files import atomic_write_file
from dunet.project import Project, open_project

HOST = "127.0.0.1"
LOCK_NAME = "dunet-label.lock"
HIDDEN_NAME = "dunet-labeller.json"
STATIC = {"labeller.js": "text/javascript", "labeller.css": "text/css"}
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".bmp": "image/bmp",
               ".webp": "image/webp", ".tif": "image/tiff", ".tiff": "image/tiff"}


class Labeller:
    """The project's labels as the page sees them; `set_points` is the one way they change."""

    def __init__(self, project: Project, predict=None):
        self.project = project
        self.predict = predict  # image path -> {point name: (x, y)}, or None
        self.frames = project.frames()
        self._suggestions: dict[str, dict] = {}
        self._write = threading.Lock()
        self._predicting = threading.Lock()

    def hidden(self) -> dict[str, list[str]]:
        path = self.project.root / HIDDEN_NAME
        if not path.is_file():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise DunetError(f"{path}: cannot read ({err}); delete it to forget which points are marked not visible")
        return data.get("hidden", {}) if isinstance(data, dict) else {}

    def missing_images(self) -> list[str]:
        """Labelled frames whose image is gone: their labels stay in the CSV, untouched."""
        present = set(self.frames)
        return sorted(key for video in self.project.videos for key in self.project.labels(video).frames
                      if key not in present)

    def state(self) -> dict:
        hidden = self.hidden()
        labels = {key: xy for video in self.project.videos for key, xy in self.project.labels(video).frames.items()}
        frames = []
        for key in self.frames:
            xy = labels.get(key)
            points = {}
            for j, name in enumerate(self.project.points):
                if xy is not None and not math.isnan(xy[j, 0]):
                    points[name] = [float(xy[j, 0]), float(xy[j, 1])]
                else:
                    points[name] = "hidden" if name in hidden.get(key, []) else None
            frames.append({"key": key, "points": points})
        return {"project": self.project.root.name, "points": self.project.points,
                "skeleton": self.project.skeleton, "frames": frames, "missing": self.missing_images(),
                "model": self.predict is not None}

    def set_points(self, key: str, changes: dict) -> dict:
        """Set points of one frame: [x, y] places, "hidden" marks not visible, None clears. Other points and
        other frames are read from disk as they are now and written back unchanged."""
        if key not in self.frames:
            raise DunetError(f"{key}: not a frame of this project")
        names = self.project.points
        for name, value in changes.items():
            if name not in names:
                raise DunetError(f"{name}: not a point of this project")
            ok = value is None or value == "hidden" or (
                isinstance(value, list) and len(value) == 2
                and all(isinstance(v, (int, float)) and math.isfinite(v) for v in value))
            if not ok:
                raise DunetError(f"{name}: expected [x, y], \"hidden\" or null")
        video = key.split("/")[1]
        with self._write:
            labels = self.project.labels(video)
            xy = labels.frames.get(key)
            xy = xy.copy() if xy is not None else _empty(len(names))
            hidden = self.hidden()
            marked = set(hidden.get(key, []))
            for name, value in changes.items():
                j = names.index(name)
                xy[j] = [round(value[0], 2), round(value[1], 2)] if isinstance(value, list) else [math.nan] * 2
                marked.discard(name)
                if value == "hidden":
                    marked.add(name)
            labels.frames[key] = xy
            # A frame with no point left stays in the file: DeepLabCut keeps such rows too.
            self.project.save_labels(video, labels)
            if marked != set(hidden.get(key, [])):
                hidden[key] = sorted(marked)
                hidden = {k: v for k, v in hidden.items() if v}
                atomic_write_file(self.project.root / HIDDEN_NAME, json.dumps({"hidden": hidden}, indent=1) + "\n",
                                  "the hidden marks")
        return next(f for f in self.state()["frames"] if f["key"] == key)

    def suggestions(self, key: str) -> dict:
        if self.predict is None or key not in self.frames:
            return {}
        with self._predicting:
            if key not in self._suggestions:
                self._suggestions[key] = self.predict(self.project.root / key)
        return self._suggestions[key]


def _empty(count: int):
    import numpy as np

    return np.full((count, 2), np.nan)


def model_predictor(name: str, points: list[str]):
    """image path -> {point: (x, y)} from a model (`dunet.load`), the whole frame as its box; only the
    points the project and the model share."""
    import dunet
    from dunet.data.images import image_size

    landmarker = dunet.load(name)
    shared = [n for n in landmarker.names if n in points]
    if not shared:
        raise DunetError(f"model {name} predicts {', '.join(landmarker.names)}: none of the project's points "
                         f"({', '.join(points)})")

    def predict(path: Path) -> dict:
        width, height = image_size(path)
        result = landmarker.predict(str(path), box=(0, 0, width, height))
        return {n: [round(float(x), 2), round(float(y), 2)] for n, (x, y) in zip(result.names, result.points)
                if n in shared}

    return predict


class Lock:
    """The file `dunet-label.lock` in the project, holding the pid of the labeller that serves it."""

    def __init__(self, root: Path):
        self.path = root / LOCK_NAME

    def acquire(self) -> None:
        for _ in range(2):
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pid = self._owner()
                if pid is not None and _alive(pid):
                    raise DunetError(f"{self.path.parent}: another labeller (pid {pid}) is serving this project; "
                                     "label in its page, or stop it first") from None
                self.path.unlink(missing_ok=True)  # left by a labeller that died: take it over
                continue
            with os.fdopen(descriptor, "w") as handle:
                handle.write(f"{os.getpid()}\n")
            return
        raise DunetError(f"{self.path}: cannot take the lock; delete it if no labeller is running")

    def release(self) -> None:
        if self._owner() == os.getpid():
            self.path.unlink(missing_ok=True)

    def _owner(self) -> int | None:
        try:
            return int(self.path.read_text().strip())
        except (OSError, ValueError):
            return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def make_server(labeller: Labeller, port: int = 8042, token: str | None = None) -> http.server.ThreadingHTTPServer:
    """The HTTP server on 127.0.0.1:port (0: any free port); `serve_forever()` runs it."""
    token = token or secrets.token_urlsafe(24)
    page = resources.files("dunet.labeller").joinpath("static/index.html").read_text(encoding="utf-8")
    page = page.replace("{{token}}", token).replace("{{project}}", labeller.project.root.name)

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):  # one line per frame would bury the URL
            pass

        def do_GET(self):
            self._guard(lambda: self._get())

        def do_POST(self):
            self._guard(lambda: self._post())

        def _guard(self, handle):
            try:
                if not self._host_ok():
                    return self._send(403, {"error": "wrong Host: open the labeller at its 127.0.0.1 address"})
                handle()
            except DunetError as err:
                self._send(400, {"error": str(err)})

        def _host_ok(self) -> bool:
            # A page from another site whose name resolves to 127.0.0.1 (DNS rebinding) sends its own Host.
            port = self.server.server_address[1]
            return self.headers.get("Host", "") in (f"{HOST}:{port}", f"localhost:{port}")

        def _token_ok(self) -> bool:
            return hmac.compare_digest(self.headers.get("X-Dunet-Token", ""), token)

        def _get(self):
            # Not urlsplit: it reads "//etc/passwd" as a host name and a path.
            raw, _, query = self.path.partition("?")
            path = urllib.parse.unquote(raw)
            if ".." in path.split("/") or "//" in path or "\\" in path or "\0" in path:
                return self._send(403, {"error": "refused: the labeller serves nothing outside the project"})
            if path in ("/", "/index.html"):
                return self._send(200, page.encode(), "text/html; charset=utf-8")
            if path.startswith("/static/") and path[8:] in STATIC:
                body = resources.files("dunet.labeller").joinpath(f"static/{path[8:]}").read_bytes()
                return self._send(200, body, STATIC[path[8:]] + "; charset=utf-8")
            if path.startswith("/image/"):
                key = path[len("/image/"):]
                if key not in labeller.frames:  # only the project's frames: nothing else under its folder either
                    return self._send(404, {"error": f"{key}: not a frame of this project"})
                body = (labeller.project.root / key).read_bytes()
                return self._send(200, body, IMAGE_TYPES.get(Path(key).suffix.lower(), "application/octet-stream"))
            if path.startswith("/api/"):
                if not self._token_ok():
                    return self._send(403, {"error": "refused: no valid token (reload the labeller's page)"})
                if path == "/api/state":
                    return self._send(200, labeller.state())
                if path == "/api/suggest":
                    key = urllib.parse.parse_qs(query).get("frame", [""])[0]
                    return self._send(200, labeller.suggestions(key))
            self._send(404, {"error": "not found"})

        def _post(self):
            if self.path != "/api/label":
                return self._send(404, {"error": "not found"})
            if not self._token_ok():
                return self._send(403, {"error": "refused: no valid token (reload the labeller's page)"})
            length = self.headers.get("Content-Length", "0")
            length = int(length) if length.isdigit() else -1
            if not 0 <= length <= 1_000_000:
                return self._send(413, {"error": "request too large, or no Content-Length"})
            try:
                body = json.loads(self.rfile.read(length))
                key, changes = body["frame"], body["points"]
                if not isinstance(key, str) or not isinstance(changes, dict):
                    raise TypeError
            except (ValueError, KeyError, TypeError):
                return self._send(400, {"error": 'expected {"frame": KEY, "points": {NAME: [x, y] | "hidden" | null}}'})
            try:
                self._send(200, labeller.set_points(key, changes))
            except (OSError, DunetError) as err:
                self._send(500, {"error": f"not saved: {err}"})

        def _send(self, status: int, body, content_type: str = "application/json"):
            if not isinstance(body, bytes):
                body = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("X-Frame-Options", "DENY")  # no other page may frame it and steer its clicks
            self.end_headers()
            self.wfile.write(body)

    try:
        server = http.server.ThreadingHTTPServer((HOST, port), Handler)
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise DunetError(f"port {port} is in use; choose another with --port") from None
        raise DunetError(f"cannot listen on {HOST}:{port} ({err.strerror})") from None
    server.daemon_threads = True
    return server


def serve(path: str | os.PathLike, port: int = 8042, model: str | None = None, ready=print) -> None:
    """Label the project at `path` in the browser until interrupted; `ready(message)` gets the address."""
    project = open_project(path)
    lock = Lock(project.root)
    lock.acquire()
    try:
        predict = model_predictor(model, project.points) if model else None
        labeller = Labeller(project, predict)
        if not labeller.frames:
            raise DunetError(f"{project.root}: no frames to label; put images in {project.root}/labeled-data/VIDEO/")
        missing = labeller.missing_images()
        if missing:
            ready(f"{len(missing)} labelled frames have no image; their labels are kept: {', '.join(missing[:5])}"
                  + (" ..." if len(missing) > 5 else ""))
        stale = [p for v in project.videos for p in [project.label_file(v).with_suffix(".h5")] if p.is_file()]
        if stale:
            ready(f"DeepLabCut trains from {stale[0].name}, which the labeller does not write: after labelling, "
                  "run deeplabcut.convertcsv2h5(config) before training in DeepLabCut")
        server = make_server(labeller, port)
        try:
            ready(f"labelling {project.root} ({len(labeller.frames)} frames) at "
                  f"http://{HOST}:{server.server_address[1]}/ ; every change is saved at once; Ctrl-C stops")
            server.serve_forever()
        finally:
            server.server_close()
    finally:
        lock.release()
