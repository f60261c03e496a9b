# Everyday recipes. `just --list` shows them.

set dotenv-load := false

# run Treadle on the embedded default with the quick-start example
run *ARGS:
    treadle serve --example {{ARGS}}

# install what the tests need and run the whole suite
test *ARGS:
    pip install -e '.[test]' && pytest -n 4 {{ARGS}}

# formatting and lint
lint:
    ruff format --check .
    ruff check .

# fix what ruff can fix
fmt:
    ruff format .
    ruff check --fix .

# strict type check of app/
typecheck:
    mypy

# everything CI runs
ci:
    bash .ci/run

# re-resolve uv.lock after changing dependencies in pyproject.toml (`pip install uv`)
lock:
    uv lock

# create or upgrade the database schema
migrate:
    treadle migrate

# benchmark harness (never part of the tests)
bench *ARGS:
    python -m bench {{ARGS}}
