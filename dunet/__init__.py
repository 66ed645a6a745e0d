"""dunet: quantized densely connected U-Nets for efficient landmark localization.

    import dunet
    landmarker = dunet.load()                  # the fast face model ("pose", a model name, a run, a file)
    result = landmarker.predict("face.jpg")    # .points, .scores, .names; box=(x, y, w, h) to give the face

`import dunet` stays light: PyTorch and the rest load on first use.
"""

__version__ = "0.1.0"


class DunetError(Exception):
    """An error a user can act on: printed by the CLI as one line, never as a traceback."""


def load(name_or_path="face", backend: str = "auto", device: str = "auto", **options):
    """A `dunet.api.Landmarker` for a pretrained model name, a run or a model file; see `dunet.api.load`."""
    from dunet.api import load as _load

    return _load(name_or_path, backend=backend, device=device, **options)
