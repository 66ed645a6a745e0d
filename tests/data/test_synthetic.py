import cv2
import numpy as np

from dunet.data.spec import SPECS
from dunet.data.synthetic import face_geometry, render_face, synthetic_source


def test_deterministic_by_seed_and_index():
    a, b = render_face(7, 3, 96), render_face(7, 3, 96)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(face_geometry(7, 3, 96).keypoints, face_geometry(7, 3, 96).keypoints)
    assert not np.array_equal(render_face(7, 4, 96), a)
    assert not np.array_equal(render_face(8, 3, 96), a)
    assert a.shape == (96, 96, 3) and a.dtype == np.uint8


def test_source_samples_match_rendered_faces():
    source = synthetic_source(count=6, seed=2, size=64)
    assert len(source) == 6 and source.spec is SPECS["300w"]
    for i, sample in enumerate(source.samples):
        np.testing.assert_array_equal(sample.keypoints, face_geometry(2, i, 64).keypoints)
        np.testing.assert_array_equal(source.load_image(i), render_face(2, i, 64))
        assert (sample.visible == 1).all()  # occluded points stay labelled, as in 300-W


def test_faces_vary_in_pose_and_size_but_stay_in_frame():
    shapes = np.stack([face_geometry(0, i, 128).keypoints for i in range(300)])
    assert shapes.shape == (300, 68, 2)
    inside = (shapes > -0.5) & (shapes < 127.5)
    assert inside.all(axis=2).mean() > 0.99
    widths = shapes[:, :, 0].max(axis=1) - shapes[:, :, 0].min(axis=1)
    assert widths.max() > 1.5 * widths.min()  # scale varies
    eyes = shapes[:, 45] - shapes[:, 36]
    roll = np.degrees(np.arctan2(eyes[:, 1], eyes[:, 0]))
    assert roll.std() > 8 and np.abs(roll).max() < 60  # tilted both ways, never upside down
    # The right eye (36-41) is drawn on the image left, as in the iBUG layout.
    assert (shapes[:, 36:42, 0].mean(axis=1) < shapes[:, 42:48, 0].mean(axis=1)).all()


def test_landmarks_sit_on_drawn_features():
    # Edges are stronger at the landmarks than elsewhere in the image: the points mark what is drawn.
    at_landmarks, elsewhere = [], []
    rng = np.random.default_rng(0)
    for i in range(40):
        image = render_face(1, i, 128).astype(np.float32).mean(axis=2)
        edges = np.hypot(cv2.Sobel(image, cv2.CV_32F, 1, 0), cv2.Sobel(image, cv2.CV_32F, 0, 1))
        edges = cv2.blur(edges, (3, 3))
        points = np.clip(np.round(face_geometry(1, i, 128).keypoints).astype(int), 0, 127)
        at_landmarks.append(edges[points[:, 1], points[:, 0]].mean())
        random = rng.integers(0, 128, size=(68, 2))
        elsewhere.append(edges[random[:, 1], random[:, 0]].mean())
    assert np.mean(at_landmarks) > 1.5 * np.mean(elsewhere)


def test_images_are_not_trivial():
    images = np.stack([render_face(4, i, 64) for i in range(30)]).astype(np.float32)
    # Backgrounds and colours change from image to image, and each image has texture.
    assert images.mean(axis=(1, 2)).std(axis=0).min() > 5
    assert np.median(images.std(axis=(1, 2)).mean(axis=1)) > 20
