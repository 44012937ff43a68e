# The two commands of the README: `make demo` runs the main job, `make test` passes the tests.
.PHONY: demo test test-fast test-slow lint venv venv-dev browser nginx clean

demo: venv
	scripts/demo.sh

test: lint browser nginx
	.venv/bin/python -m pytest

# ruff over the whole tree (rules in pyproject.toml), mypy over lib/ and api/ (strict where typed).
lint: venv-dev
	.venv/bin/ruff check .
	.venv/bin/mypy

test-fast: venv-dev
	.venv/bin/python -m pytest -m "not slow"

test-slow: venv-dev browser nginx
	.venv/bin/python -m pytest -m slow

venv:
	scripts/setup_venv.sh

venv-dev:
	scripts/setup_venv.sh --dev

browser:
	scripts/setup_browser.sh

nginx:
	scripts/setup_nginx.sh

clean:
	scripts/clean.sh --all
