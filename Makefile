# The two commands of the README: `make demo` runs the main job, `make test` passes the tests.
.PHONY: demo test test-slow venv venv-dev clean

demo: venv
	scripts/demo.sh

test: venv-dev
	.venv/bin/python -m pytest

test-slow: venv-dev
	.venv/bin/python -m pytest -m slow

venv:
	scripts/setup_venv.sh

venv-dev:
	scripts/setup_venv.sh --dev

clean:
	scripts/clean.sh --all
