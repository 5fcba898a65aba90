# esnet_ros: the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
ENV := . tools/env.sh &&
CAMERA ?=
DEMO_SECONDS ?= 30
DEMO_RATE_HZ ?= 30
DEMO_ARGS ?=
PYTEST_ARGS ?=

.PHONY: help setup test lint format demo bench soak clean
help:
	@echo "make demo   - set up, then run the synthetic camera (30 Hz) + segmentation node, write demo_output/"
	@echo "make test   - set up, then run the whole test suite"
	@echo "make lint   - ruff check + ruff format --check (what test/test_lint.py asserts)"
	@echo "make format - ruff format + ruff check --fix"
	@echo "make setup  - .venv + ROS 2 Kilted wheels + torch + colcon build (idempotent)"
	@echo "make bench  - benchmark model and node (JSON in bench.json)"
	@echo "make soak   - 10-minute soak of the node at 30 Hz (JSON in soak.json)"

setup:
	@bash tools/setup.sh

test: setup
	@$(ENV) python -m pytest $(PYTEST_ARGS)

lint: setup
	@$(ENV) ruff check . && ruff format --check .

format: setup
	@$(ENV) ruff format . && ruff check --fix .

demo: setup
	@$(ENV) esnet demo --seconds $(DEMO_SECONDS) $(if $(CAMERA),--camera $(CAMERA),--rate-hz $(DEMO_RATE_HZ)) $(DEMO_ARGS)

bench: setup
	@$(ENV) esnet bench --json bench.json

soak: setup
	@$(ENV) esnet soak --minutes 10 --rate-hz 30 --width 512 --height 256 --json soak.json

clean:
	rm -rf .colcon demo_output
