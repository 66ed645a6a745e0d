"""dunet: quantized densely connected U-Nets for efficient landmark localization."""

__version__ = "0.1.0"


class DunetError(Exception):
    """An error a user can act on: printed by the CLI as one line, never as a traceback."""
