# MNIST Digit Classifier: every developer task is a make target. `make` alone lists them.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8501
BURSTS ?= 8,16,32,64
ADDRESS ?= 127.0.0.1
STAMP := $(VENV)/.installed-stamp
SOURCES := *.py config access inference storage serve views training tools tests
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)

.PHONY: help install run check test lint format typecheck train leave-out trials evaluate experiments promote rollback loop loop-drill retrain retrain-drill doodle-drill \
	mlflow loadtest loadtest-api bench bench-burst bench-inserts bench-history bench-numbers drill-rolling data prune up down logs clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

# Re-runs only when a requirements file changes (the stamp is older than them).
$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install pinned runtime + dev requirements (idempotent)

run: install ## Start the app on http://$(ADDRESS):$(PORT) (ADDRESS=0.0.0.0 for every interface); embedded PostgreSQL unless DATABASE_URL/POSTGRES_HOST is set
	MALLOC_ARENA_MAX=2 FORWARDED_ALLOW_IPS= $(PY) -m streamlit run server.py --server.address $(ADDRESS) --server.port $(PORT)

# The inner loop: the tests that need no PostgreSQL, browser, MNIST files or long run (pytest markers, tests/conftest.py).
check: install lint typecheck ## Lint, typecheck and the tests that need no server, browser or MNIST (minutes)
	$(PY) -m pytest -m "not (browser or postgres or mnist or slow)"

test: install lint typecheck ## Lint, typecheck and run every test (what CI runs)
	$(PY) -m pytest

lint: install ## black, flake8, actionlint, hadolint, Kubernetes manifests (kustomize + strict schemas), amtool, JS, CSS
	$(PY) -m black --check --quiet $(SOURCES)
	$(PY) -m flake8 $(SOURCES)
	$(PY) -m tools.lint_css components/*.css
	$(VENV)/bin/actionlint .github/workflows/*.yml
	$(VENV)/bin/hadolint Dockerfile deploy/training.Dockerfile
	$(PY) -m tools.kubernetes check
	@if command -v amtool >/dev/null; then amtool check-config monitoring/alertmanager.yml; \
	else echo "amtool not found (apt-get install prometheus-alertmanager): monitoring/alertmanager.yml not checked"; fi
	@# The custom elements' JS, syntax-checked as ES modules (node reads .mjs as one), where node is installed.
	@if command -v node >/dev/null; then tmp=$$(mktemp -d); for f in components/*.js; do \
		cp "$$f" "$$tmp/$$(basename "$$f" .js).mjs" && node --check "$$tmp/$$(basename "$$f" .js).mjs" || exit 1; \
	done; rm -rf "$$tmp"; else echo "node not found: components/*.js not syntax-checked"; fi

format: install ## Reformat the code with black
	$(PY) -m black --quiet $(SOURCES)

typecheck: install ## mypy
	$(PY) -m mypy

train: install ## The production recipe from scratch (digits, then not a digit; ~25 min on 2 cores): a registered version
	$(PY) train.py

leave-out: install ## Leave-family-out folds of the newest run's stage 2 -> models/leave_out.json + the card's table
	$(PY) -m training.evaluation.leave_out --digits "$$(ls -td data/runs/*/digits.pth | head -1)"
	$(PY) -m training.evaluation.leave_out --report

trials: install ## The second design's trials (a rotation task, an ensemble) on the leave-family-out folds -> models/trials.json + the card
	$(PY) -m training.evaluation.trials --digits "$$(ls -td data/runs/*/digits.pth | head -1)"
	$(PY) -m training.evaluation.trials --report

evaluate: install ## Test-set accuracy, per-class P/R/F1, models/confusion_matrix.png for the shipped model
	$(PY) train.py --evaluate models/model.pth

experiments: install ## Train variants of today's recipe (training/lifecycle/experiments.py), compared in models/README.md
	$(PY) -m training.lifecycle.experiments

promote: install ## Gate registered VERSION=N against production; on success it becomes models/model.pth
	@test -n "$(VERSION)" || { echo "Usage: make promote VERSION=N (a version of mnist-digit-classifier)"; exit 2; }
	$(PY) train.py --promote $(VERSION)

rollback: install ## Restore the production model that the last promotion replaced
	$(PY) train.py --rollback

loop: install ## The loop's scheduled check: retrain (and with AUTO_PROMOTE=1 gate and ship) only when the labels call for it
	$(PY) train.py --retrain-if-needed

loop-drill: install ## The loop in a throwaway world: 40 labels (not needed), a misread style (promoted, swapped live), poison (refused)
	$(PY) -m tools.loop_drill

retrain: install ## Fine-tune production on the feedback in the app's database -> models/candidate.pth (+ .json)
	$(PY) train.py --retrain

retrain-drill: install ## The feedback loop on styles the model misreads, in a throwaway database (figures)
	$(PY) -m tools.feedback_drill

doodle-drill: install ## Users label three doodle families the model reads as digits: retrain, then judge on fresh drawings
	$(PY) -m tools.doodle_drill

mlflow: install ## The MLflow UI over the tracking store on http://127.0.0.1:5000
	$(VENV)/bin/mlflow ui --host 127.0.0.1 --port 5000 \
		--backend-store-uri "$$($(PY) -c 'from training import registry; print(registry.tracking_uri())')"

loadtest: install ## USERS (24) x PREDICTIONS (5) in Chromium; REPLICAS=N behind Caddy, KILL_AFTER=S kills one
	$(PY) -m tools.load.loadtest --users $(or $(USERS),24) --predictions $(or $(PREDICTIONS),5) $(if $(URL),--url $(URL)) \
		$(if $(REPLICAS),--replicas $(REPLICAS)) $(if $(KILL_AFTER),--kill-after $(KILL_AFTER))

loadtest-api: install ## Locust: USERS (8) clients for SECONDS (30) against POST /api/predict, REPLICAS=N behind Caddy, SWAP_AFTER=S
	$(PY) -m tools.load.loadtest_api --users $(or $(USERS),8) --seconds $(or $(SECONDS),30) $(if $(REPLICAS),--replicas $(REPLICAS)) \
		$(if $(SWAP_AFTER),--swap-after $(SWAP_AFTER))

bench: install ## Benchmarks: inference latency, database writes/reads, page response (figures for the README)
	$(PY) -m tools.bench.benchmark

bench-burst: install ## BURSTS (8,16,32,64) parallel worst-case images via the API: peak and settled RSS, refusals, rows
	$(PY) -m tools.bench.bench_burst --bursts $(BURSTS)

bench-inserts: install ## PostgreSQL's insert ceiling through the app's own path at 1-16 writers, and pgbench beside it
	$(PY) -m tools.bench.bench_inserts --seconds $(or $(SECONDS),5)

drill-rolling: install ## 3 replicas behind Caddy, browser users + API clients, each replica restarted in turn: rows == answers
	$(PY) -m tools.load.loadtest --replicas 3 --users $(or $(USERS),12) --predictions $(or $(PREDICTIONS),5) \
		--roll-after 8 --api-clients 2 --spread

bench-history: install ## History/Stats/insert on ROWS (1,000,000) predictions in a throwaway database, with plans
	$(PY) -m tools.bench.bench_history --rows $(or $(ROWS),1000000) --plans

bench-numbers: install ## Numbers of 2-8 MNIST test digits read whole and per digit, by spacing; touching; doodles; timing
	$(PY) -m tools.bench.bench_numbers --per-cell $(or $(PER_CELL),100) --card

data: install ## Place the MNIST files from MNIST_DIR into data/MNIST/raw/ (offline machines)
	@test -n "$(MNIST_DIR)" || { echo "Set MNIST_DIR to a folder with the four MNIST IDX files (.gz or not)"; exit 1; }
	$(PY) -c "from training import dataset; import pathlib; print(dataset.place_mnist(pathlib.Path('$(MNIST_DIR)')))"

prune: install ## Delete predictions older than DAYS days (with their images) where the environment points
	@test -n "$(DAYS)" || { echo "Usage: make prune DAYS=N (predictions older than N days are deleted)"; exit 2; }
	$(PY) db.py --prune-days $(DAYS)

up: ## docker compose up -d --build (needs .env: cp .env.example .env and set passwords)
	$(COMPOSE) up -d --build

backup: ## A verified dump (0600, retention, off-site with BACKUP_REMOTE) of the database; BACKUP_SOURCE=compose on the server
	deploy/backup.sh backup

restore-drill: ## Restore the newest dump into a throwaway database and compare it with the dump, row for row
	deploy/backup.sh restore-drill

update: ## Pull the pinned images (docker-compose.yml) and rebuild the app on a fresh base: upgrades happen on purpose
	$(COMPOSE) pull db caddy
	$(COMPOSE) --profile monitoring pull prometheus grafana
	$(COMPOSE) build --pull app

down: ## docker compose down (keeps the database volume)
	$(COMPOSE) down

logs: ## Follow the Compose logs
	$(COMPOSE) logs -f --tail=100

clean: ## Remove caches and test artefacts (keeps .venv, data/ and the model)
	rm -rf .mypy_cache .pytest_cache .hypothesis test-artifacts data/dry-run
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +
