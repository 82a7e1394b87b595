# MNIST Digit Classifier: every developer task is a make target. `make` alone lists them.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8501
STAMP := $(VENV)/.installed-stamp
SOURCES := app.py utils.py db.py train.py tests
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)

.PHONY: help install run test lint format typecheck train evaluate bench data up down logs clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# Re-runs only when a requirements file changes (the stamp is older than them).
$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install pinned runtime + dev requirements (idempotent)

run: install ## Start the app at http://localhost:$(PORT) (embedded PostgreSQL unless DATABASE_URL/POSTGRES_HOST is set)
	$(PY) -m streamlit run app.py --server.port $(PORT)

test: install lint typecheck ## Lint, typecheck and run every test (what CI runs)
	$(PY) -m pytest

lint: install ## black --check and flake8
	$(PY) -m black --check --quiet $(SOURCES)
	$(PY) -m flake8 $(SOURCES)

format: install ## Reformat the code with black
	$(PY) -m black --quiet $(SOURCES)

typecheck: install ## mypy
	$(PY) -m mypy

train: install ## Train from scratch -> models/model.pth, metrics.json, training_curves.png (MNIST_DIR offline)
	$(PY) train.py

evaluate: install ## Test-set accuracy, per-class P/R/F1, models/confusion_matrix.png for the shipped model
	$(PY) train.py --evaluate models/model.pth

bench: install ## Benchmarks: inference latency, database writes/reads, page response (figures for the README)
	$(PY) tests/benchmark.py

data: install ## Place the MNIST files from MNIST_DIR into data/MNIST/raw/ (offline machines)
	@test -n "$(MNIST_DIR)" || { echo "Set MNIST_DIR to a folder with the four MNIST IDX files (.gz or not)"; exit 1; }
	$(PY) -c "import train, pathlib; print(train.place_mnist(pathlib.Path('$(MNIST_DIR)')))"

up: ## docker compose up -d --build (needs .env: cp .env.example .env and set passwords)
	$(COMPOSE) up -d --build

down: ## docker compose down (keeps the database volume)
	$(COMPOSE) down

logs: ## Follow the Compose logs
	$(COMPOSE) logs -f --tail=100

clean: ## Remove caches and test artefacts (keeps .venv, data/ and the model)
	rm -rf .mypy_cache .pytest_cache .hypothesis test-artifacts data/dry-run
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +
