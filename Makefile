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

# Starts devhost with embedded Azurite and PostgreSQL on 127.0.0.1:7071 (Ctrl-C stops everything).
run: install
	@test -f local.settings.json || (cp local.settings.sample.json local.settings.json && echo "created local.settings.json from local.settings.sample.json")
	$(BIN)/python -m devhost --script-root . --port 7071

test: install $(INFRA_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)
