# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both create .venv, install the pinned dependencies (constraints.txt) and Fashion-MNIST if missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.dsdistill-installed
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
DEMO   := out/demo

.PHONY: setup data test demo clean help

help:
	@echo "make demo   set up, then distill a Fashion-MNIST set (DataDAM) and score it beside a random selection"
	@echo "make test   set up, then run the whole test suite (CPU, < 10 minutes)"

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt torch torchvision
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]'
	@touch $(STAMP)

# Debian's dataset-fashion-mnist puts the IDX files under /usr/share/datasets/fashion-mnist.
# Without apt the loader falls back to torchvision's download (see README).
data:
	@if [ ! -f $(FMNIST) ] && command -v apt-get >/dev/null 2>&1; then \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO="sudo -n"; \
	  $$SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -qq >/dev/null 2>&1 && $$SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1; } || \
	  echo "note: could not install dataset-fashion-mnist with apt; dsdistill will try torchvision's download"; \
	fi

test: setup data
	$(PY) -m pytest -q

# The main job: DataDAM on Fashion-MNIST at IPC 10 for a few minutes on 2 cores, then that set and a
# random selection of the same size scored under dc-quick, printed as one table (about 15 minutes).
demo: setup data
	@mkdir -p $(DEMO)
	$(PY) -m dsdistill distill --method datadam.fmnist-cpu --dataset fashion-mnist --ipc 1 --seed 0 \
	    --iterations 100 --out $(DEMO)/datadam-ipc1.h5
	$(PY) -m dsdistill select --method random --dataset fashion-mnist --ipc 1 --seed 0 --out $(DEMO)/random-ipc1.h5
	$(PY) -m dsdistill compare $(DEMO)/datadam-ipc1.h5 $(DEMO)/random-ipc1.h5 --protocol dc-quick \
	    --json $(DEMO)/compare.dc-quick.json

clean:
	rm -rf $(VENV) out .pytest_cache
