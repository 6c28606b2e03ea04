# The two commands (see README): `make demo` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint format bench docs clean image-tools
# Debian packages the image builder needs (docs/images.md): installed when missing, as root.
IMAGE_TOOLS := buildah podman docker-registry mmdebstrap

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

image-tools:
	@missing=""; for tool in $(IMAGE_TOOLS); do \
	  command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else \
	    echo "note: image tools missing:$$missing (apt-get install them as root); image tests skip"; \
	  fi; \
	fi

demo: $(STAMP) image-tools
	$(BIN)/python -m plinth.demo

test: $(STAMP) image-tools
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -n 2 --dist loadfile -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

docs: $(STAMP)
	$(BIN)/typer plinth.cli.main utils docs --name plinth --output docs/cli.md

bench: $(STAMP)
	$(BIN)/python bench/gateway.py
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/weights.py
	$(BIN)/python bench/autoscale.py
	$(BIN)/python bench/mcm.py
	$(BIN)/python bench/async.py
	$(BIN)/python bench/builder.py

clean:
	rm -rf $(VENV) .plinth
