from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real research-only data beside the repo (../shared/data); CI has it too."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is missing")
    return SHARED_DATA


# Tests use small models: one thread each is faster than two threads fighting over a loaded machine.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


OPENFIELD_VIDEO = SHARED_DATA / "dlc_openfield" / "videos" / "m3v1mp4.mp4"


@pytest.fixture
def clip(tmp_path) -> Path:
    """A 40-frame video: the openfield video's first 40 frames cut with OpenCV, else a generated moving dot."""
    import cv2
    import numpy as np

    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (320, 240))
    capture = cv2.VideoCapture(str(OPENFIELD_VIDEO)) if OPENFIELD_VIDEO.is_file() else None
    for i in range(40):
        ok, frame = capture.read() if capture is not None else (False, None)
        if not ok:
            frame = np.full((240, 320, 3), 40, np.uint8)
            cv2.circle(frame, (20 + 7 * i, 120 + (i % 10) * 5), 12, (220, 220, 220), -1)
        writer.write(cv2.resize(frame, (320, 240)))
    writer.release()
    if capture is not None:
        capture.release()
    return path
