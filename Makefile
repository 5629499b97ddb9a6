# ShopFlow: `make run` starts everything on the embedded default; `make test` runs the suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
# The suite runs on PostgreSQL and Redis (database `shopflow`, Redis db 15 by default).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/shopflow
TEST_BROKER_URL ?= redis://127.0.0.1:6379/15

.PHONY: run test bench lint format venv dev services chromium clean

venv: $(VENV)/.installed
dev: $(VENV)/.dev-installed

$(VENV)/.installed: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements-dev.txt $(VENV)/.installed
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

RUN_URL = http://127.0.0.1:$(PORT)
# Ctrl-C is how `run` stops, so honcho's exit code 130 then is no error.
run: venv
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo
	@printf '%s\n' "" "ShopFlow is starting on $(RUN_URL)/ (web, worker and beat; Ctrl-C stops them all)" \
	  "  API docs    $(RUN_URL)/api/docs/" \
	  "  admin       $(RUN_URL)/admin/  (log in as the staff user above)" \
	  "  dashboard   $(RUN_URL)/admin/dashboard/" \
	  "  API token   POST $(RUN_URL)/api/auth/token/ with a customer above" \
	  "  demo load   $(BIN)/python manage.py simulate_orders --url $(RUN_URL)" ""
	@PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start -f Procfile -p $(PORT) || test $$? -eq 130

services:
	@bash .ci/services.sh

test: dev services chromium
	DATABASE_URL=$(TEST_DATABASE_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) $(BIN)/pytest $(PYTEST_ARGS)

# The browser tests drive Debian's Chromium through Playwright; `playwright install`
# would download a browser build, which this setup never does.
chromium:
	@test -x /usr/bin/chromium || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

bench: dev services
	DATABASE_URL=$(TEST_DATABASE_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) $(BIN)/python bench/outbox.py
	DATABASE_URL=$(TEST_DATABASE_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) $(BIN)/python bench/orders_api.py
	DATABASE_URL=$(TEST_DATABASE_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) $(BIN)/python bench/saga.py

lint: dev
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf var/broker var/*.sqlite3* var/celerybeat-schedule* var/prometheus
