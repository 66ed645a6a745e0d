# `make demo` and `make test` work on a fresh machine with only Python 3.11:
# they create .venv at the repo root if needed and install dunet with its dev extras.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/dunet demo

# `make test` runs the suite, then the tests marked `kernels` (int8 files, bf16 and thread choices, the own-data recipe's sizing) once more
# as an AVX2-only CPU (AMD Zen 3 and the like) computes them, so a run on a newer CPU catches what such a CPU sees.
test: $(STAMP)
	$(BIN)/python -m pytest -q
	ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 $(BIN)/python -m pytest -q -m kernels

clean:
	rm -rf $(VENV) build *.egg-info
