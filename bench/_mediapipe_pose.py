"""MediaPipe Pose on a list of images, in its own process: run by bench/pose_peers.py with a Python that has
`mediapipe` (its 0.10 wheels pin numpy < 2 and bring opencv-contrib-python, which would replace the OpenCV
dunet uses, so it lives in a venv of its own; see bench/pose_peers.py).

    python bench/_mediapipe_pose.py '{"images": [...], "rounds": 5}'

Pinned to one core (dunet is timed on one thread). Each image goes through `Pose(static_image_mode=True,
model_complexity=1)`: MediaPipe's "full" pose model, with its person detector on every image. Prints one JSON
object on the last line: for each image the 12 joints LSP shares with MediaPipe's 33 (LSP order, pixels) or
null when nobody was found, and the ms per image of each timing round (every image once per round).
"""

from __future__ import annotations

import json
import os
import sys
import time

# MediaPipe's landmark index for each LSP joint but the neck and head top, in LSP order: right ankle, knee,
# hip, left hip, knee, ankle, right wrist, elbow, shoulder, left shoulder, elbow, wrist. Both name the
# person's own left and right.
MEDIAPIPE_OF_LSP = (28, 26, 24, 23, 25, 27, 16, 14, 12, 11, 13, 15)


def main() -> None:
    job = json.loads(sys.argv[1])
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    import cv2
    import mediapipe as mp

    images = [cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB) for path in job["images"]]
    with mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1) as pose:
        points = []
        for image in images:
            found = pose.process(image).pose_landmarks
            height, width = image.shape[:2]
            points.append(None if found is None else
                          [[found.landmark[i].x * width, found.landmark[i].y * height] for i in MEDIAPIPE_OF_LSP])
        rounds = []
        for _ in range(job["rounds"]):
            start = time.perf_counter()
            for image in images:
                pose.process(image)
            rounds.append(1000 * (time.perf_counter() - start) / len(images))
    print(json.dumps({"points": points, "ms_per_image": rounds, "mediapipe": mp.__version__}))


if __name__ == "__main__":
    main()
