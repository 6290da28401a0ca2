# Two commands for a fresh machine: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SHOP_PORT ?= 8090
# The example shop's API key: a fixed dev value (the shop is fake and listens on loopback),
# given to the shop and, as the shop app's credential, to the demo user (examples/README.md).
SHOP_API_KEY ?= dev-shop-key
INSTALLED := $(VENV)/.installed
TEST_INSTALLED := $(VENV)/.test-installed
# The dev REFLOW_SECRET_KEY, made once beside the dev API key file (docs/security.md).
DEV_SECRET ?= $(dir $(or $(REFLOW_DEV_KEY_FILE),./.reflow-dev-key)).reflow-dev-secret

.PHONY: run test lint typecheck pytest bench bench-quick lock clean

$(INSTALLED): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e .
	touch $@

$(TEST_INSTALLED): $(INSTALLED)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	touch $@

## run: install, migrate, load the examples, connect the demo user to the shop, serve (Ctrl-C stops)
run: $(INSTALLED)
	@test -s $(DEV_SECRET) || (umask 077 && $(BIN)/python -c 'import base64, os; \
		print(base64.urlsafe_b64encode(os.urandom(32)).decode())' > $(DEV_SECRET))
	@$(BIN)/python examples/shop.py --port $(SHOP_PORT) --api-key '$(SHOP_API_KEY)' & shop=$$!; \
	trap 'kill $$shop 2>/dev/null' EXIT INT TERM; \
	REFLOW_ENV=$${REFLOW_ENV:-dev} \
	REFLOW_SECRET_KEY=$${REFLOW_SECRET_KEY:-$$(cat $(DEV_SECRET))} \
	REFLOW_HTTP_ALLOW_NETWORKS=$${REFLOW_HTTP_ALLOW_NETWORKS:-127.0.0.0/8} \
	REFLOW_EXPRESSION_ENV=$${REFLOW_EXPRESSION_ENV:-'{"shopUrl": "http://127.0.0.1:$(SHOP_PORT)"}'} \
	$(BIN)/reflow serve --apply examples/ --demo-user demo@example.com \
		--demo-credential 'shop:apiKey=$(SHOP_API_KEY)'

## test: install the test dependencies, then lint, type check and run every test
test: $(TEST_INSTALLED) lint typecheck pytest

lint: $(TEST_INSTALLED)
	$(BIN)/ruff check src tests bench examples

typecheck: $(TEST_INSTALLED)
	$(BIN)/mypy

# PostgreSQL tests run when a server answers (tests/with_postgres.sh starts a local one).
pytest: $(TEST_INSTALLED)
	tests/with_postgres.sh $(BIN)/python -m pytest

## bench: the benchmark suite (prints a table, writes bench/results/latest.json)
bench: $(INSTALLED)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[bench]'
	$(BIN)/python -m bench

bench-quick: $(INSTALLED)
	$(BIN)/python -m bench --quick

## lock: refresh constraints.txt from a clean resolve of pyproject.toml
lock:
	rm -rf /tmp/reflow-lock && $(PYTHON) -m venv /tmp/reflow-lock
	/tmp/reflow-lock/bin/python -m pip install -q --upgrade pip
	/tmp/reflow-lock/bin/python -m pip install -q -e '.[test,bench]'
	/tmp/reflow-lock/bin/python -m pip freeze --exclude-editable | grep -v '^-e' > constraints.txt

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache
