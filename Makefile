# The two commands a person needs: `make run` (the whole service locally) and `make test`.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)
# checkov (tests/infra) lives apart from the app: its pinned dependencies clash with the app's.
INFRA_VENV := .venv-infra
INFRA_STAMP := $(INFRA_VENV)/.installed-$(shell cat requirements-infra.txt | sha1sum | cut -c1-12)

.PHONY: install tools run test dashboard-vendor

$(STAMP): requirements.txt requirements-dev.txt
	rm -f $(VENV)/.installed-*
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

install: $(STAMP)

$(INFRA_STAMP): requirements-infra.txt
	rm -f $(INFRA_VENV)/.installed-*
	$(PY) -m venv $(INFRA_VENV)
	echo '*' > $(INFRA_VENV)/.gitignore
	$(INFRA_VENV)/bin/pip install -q --upgrade pip
	$(INFRA_VENV)/bin/pip install -q -r requirements-infra.txt
	touch $@

# Starts devhost with embedded Azurite and PostgreSQL on 127.0.0.1:$(PORT) (Ctrl-C stops everything).
# `make run PORT=7072` when 7071 is taken. The app checks dev tokens against devhost's JWKS: on a port other
# than 7071 its URL is set in the environment, which wins over local.settings.json (whose value stands on
# 7071; a TRAWL_AUTH_JWKS_URL you export yourself wins over both). `:=`, not `?=`: a PORT in the environment
# often means something else.
PORT := 7071
run: install
	@test -f local.settings.json || (cp local.settings.sample.json local.settings.json && echo "created local.settings.json from local.settings.sample.json")
	$(if $(filter-out 7071,$(PORT)),TRAWL_AUTH_JWKS_URL="$${TRAWL_AUTH_JWKS_URL:-http://127.0.0.1:$(PORT)/.devhost/jwks}") \
	$(BIN)/python -m devhost --script-root . --port $(PORT)

# The azd hook tests run the hooks' SQL with the PostgreSQL client a deploying machine has (pgserver's own psql
# has no TLS): Debian's, installed when missing. The dashboard's browser tests (tests/browser) drive Debian's
# Chromium; without it they are skipped, loudly.
tools:
	@command -v psql >/dev/null || (apt-get update -q && apt-get install -y -q postgresql-client)
	@test -x /usr/bin/chromium || (apt-get update -q && apt-get install -y -q chromium) \
		|| echo "WARNING: Chromium could not be installed: the dashboard's browser tests will be skipped"

# MSAL.js for the dashboard's Entra ID sign-in, vendored (committed) in dashboard/vendor/: the browser build (UMD,
# a classic script that defines `msal`) of the version dashboard/package-lock.json pins. Run after changing the pin.
dashboard-vendor:
	cd dashboard && npm ci --ignore-scripts --no-audit --no-fund
	cp dashboard/node_modules/@azure/msal-browser/lib/msal-browser.min.js dashboard/vendor/msal-browser.min.js
	cp dashboard/node_modules/@azure/msal-browser/LICENSE dashboard/vendor/msal-browser.LICENSE

# Line coverage of the app in the test process (README, Tests): a full run fails below it, or below 90% for the
# item worker and the job service. A part of the suite (PYTEST_ARGS) is measured but not held to the floors.
COVERAGE_FLOOR := 90
SERVICE_MODULES := shared/services/item_worker.py,shared/services/job_service.py
test: install tools $(INFRA_STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/python -m pytest --cov $(if $(PYTEST_ARGS),,--cov-fail-under=$(COVERAGE_FLOOR)) $(PYTEST_ARGS)
	$(if $(PYTEST_ARGS),,$(BIN)/coverage report --include=$(SERVICE_MODULES) --fail-under=90)
