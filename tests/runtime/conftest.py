from tests.engine.conftest import tiny_config  # noqa: F401 (a fixture: a tiny training recipe)
