# The two commands a person needs: `make run` (the whole service locally) and `make test`.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)
# checkov (tests/infra) lives apart from the app: its pinned dependencies clash with the app's.
INFRA_VENV := .venv-infra
INFRA_STAMP := $(INFRA_VENV)/.installed-$(shell cat requirements-infra.txt | sha1sum | cut -c1-12)

.PHONY: install run test

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

test: install $(INFRA_STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest $(PYTEST_ARGS)
