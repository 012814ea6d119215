# Quick start: `make demo` and `make test`. Both build .venv on first use.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-busy lint bench fuzz soak docs screenshots clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[cluster,test]'
	# synapse-sdk's AgentClient, for the compatibility tests: it declares Python >= 3.12 while its client modules
	# run on 3.11, and its other dependencies (OpenCV, cloud filesystems) are not needed by them
	$(BIN)/pip install --quiet --no-deps --ignore-requires-python synapse-sdk==2026.2.17
	# Agent Lightning 1.0 (its server as the reference of the /agl routes, its rollout manager and reconciler as
	# clients): it declares Python >= 3.12 too; what it imports is in the test extra.
	$(BIN)/pip install --quiet --no-deps --ignore-requires-python agentlightning==1.0.2
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/pytest -q
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
		echo "NOTE: the browser tests of the web console did not run (no Chromium here); install it with: sudo apt-get install -y chromium"
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || \
		echo "NOTE: the PostgreSQL journal's tests did not run (no PostgreSQL here); install it with: sudo apt-get install -y postgresql"

# The usual suite beside a process that keeps one core busy, as on a machine shared with other work (capped at 40
# minutes); the hog is started and stopped by pid here. Not in CI (its time): run it before a change to tests or timing.
test-busy: lint
	@$(BIN)/python -c "while True: pass" & hog=$$!; trap 'kill $$hog' EXIT; \
	echo "a CPU hog (pid $$hog) keeps one core busy while the suite runs"; \
	timeout 2400 $(BIN)/pytest -q

screenshots: $(STAMP)  # the README's console screenshots (docs/console), taken by the browser tests
	RR_CONSOLE_SCREENSHOTS=docs/console $(BIN)/pytest -q tests/browser

bench: $(STAMP)
	$(BIN)/python -m bench.coordinator
	$(BIN)/python -m bench.plugins
	$(BIN)/python -m bench.api
	$(BIN)/python -m bench.sessions
	$(BIN)/python -m bench.agl

fuzz: $(STAMP)  # schemathesis over every operation for 20 minutes (CI runs one minute of it in make test)
	RAY_RUNTIME_FUZZ_S=1200 $(BIN)/pytest -q --timeout 3000 tests/integration/test_api_schema.py

soak: $(STAMP)  # 30 minutes of mixed traffic; prints the façade's and the coordinator's growth
	$(BIN)/python -m bench.soak --minutes $${SOAK_MINUTES:-30}

docs: $(STAMP)  # the agent protocol's JSON Schema, from its models
	$(BIN)/python -c "import json; from ray_runtime.models.agent import protocol_schema; print(json.dumps(protocol_schema(), indent=2))" > docs/agent-protocol.schema.json

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
