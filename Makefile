# The two commands of the README: `make demo` runs the main job, `make test` passes the tests.
.PHONY: demo test test-fast test-slow venv venv-dev browser nginx clean

demo: venv
	scripts/demo.sh

test: venv-dev browser nginx
	.venv/bin/python -m pytest

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
