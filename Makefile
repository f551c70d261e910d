# Two commands: `make offline` runs the whole service on this machine, `make test` runs
# every test. Both install what they need from the lock files first.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PIPENV_VERSION := 2026.10.3
PYTHON ?= python3

# Everything lives inside the project: the pipenv tool, the virtualenv, the npm packages.
export PIPENV_VENV_IN_PROJECT := 1
export PIPENV_VERBOSITY := -1
export PIPENV_NOSPIN := 1
# CI has no locale; pipenv warns without one, and the Korean examples want UTF-8.
export LANG ?= C.UTF-8
# venv first so serverless-offline's `python3` workers and the packager find our packages;
# .tools for the `pipenv` that serverless-python-requirements calls.
export PATH := $(CURDIR)/.venv/bin:$(CURDIR)/.tools/bin:$(CURDIR)/node_modules/.bin:$(PATH)

.PHONY: help install check test test-unit mutate offline token publish events bench package preflight screenshot clean

# The local stack's ports (scripts/local_stack.py reads the same variables).
OFFLINE_HTTP_PORT ?= 3000
OFFLINE_WEBSOCKET_PORT ?= 3001
OFFLINE_LAMBDA_PORT ?= 3002
OFFLINE_PAGE_PORT ?= 3003
OFFLINE_DYNAMODB_PORT ?= 5000

# Every target, one line each (tests/build/test_makefile.py checks that none is missing).
help:
	@echo "make offline      start the whole service locally: WebSocket ws://localhost:$(OFFLINE_WEBSOCKET_PORT), HTTP :$(OFFLINE_HTTP_PORT), page http://localhost:$(OFFLINE_PAGE_PORT)/"
	@echo "                  (Lambda :$(OFFLINE_LAMBDA_PORT), moto :$(OFFLINE_DYNAMODB_PORT); move them with OFFLINE_HTTP_PORT=... and the like)"
	@echo "                  REVIEW=example: every message reviewed by the example word list first (docs/moderation.md)"
	@echo "make test         install from the lock files, run make check, then every test (Node's for web/, pytest's)"
	@echo "make test-unit    the unit tier only (tests/unit, moto in process): the edit loop, about a minute"
	@echo "make check        the gate: ruff (lint, format) and mypy over chat/ and handler.py"
	@echo "make mutate       mutation testing of chat/ and handler.py (slow: not in make test); MUTANTS='chat.history.*'"
	@echo "make token FOR=alice   a token for the running make offline; HOURS=0.05 CHANNELS='team-*,lobby' MODERATES=lobby; ISSUER=cognito"
	@echo "make publish      POST /publish to the running make offline: CHANNEL=deploys (or TO=alice, ROOM=1) SENDER=ci-bot CONTENT=hi"
	@echo "make events       the events the running make offline sends (EventBridge), one JSON line each"
	@echo "make bench        run the benchmarks in bench/"
	@echo "make package      build the CloudFormation template and zip (sls package)"
	@echo "make preflight    before sls deploy: check the account has what the deploy needs; STAGE=dev REGION=..."
	@echo "make screenshot   web/chat-page.png (Debian: chromium, chromium-driver, fonts-nanum, fonts-noto-color-emoji)"
	@echo "make install      install pipenv, the Python packages and the npm packages into this folder"
	@echo "make clean        remove build output, caches, .offline/ and mutants/"
	@echo "make help         this list"

install: .venv/.installed node_modules/.installed

.tools/bin/pipenv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check pipenv==$(PIPENV_VERSION)

# --deploy refuses to run when Pipfile.lock is out of date with the Pipfile.
.venv/.installed: Pipfile Pipfile.lock .tools/bin/pipenv
	pipenv install --dev --deploy
	touch $@

node_modules/.installed: package.json package-lock.json .npmrc $(wildcard patches/*.patch)
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Four pytest-xdist workers, a test file each at a time (--dist loadfile): each worker starts its
# own local stack (a session fixture) once it needs one, and a file's tests share its fixtures.
# Files are handed out in tests/conftest.py's TIER_ORDER (--no-loadscope-reorder): the long
# end-to-end files first, the unit tier's short ones last (docs/testing.md). TEST_WORKERS=0: in this process.
TEST_WORKERS ?= 4
test: check
	node --test web/test/*.test.js
	pytest -ra --timeout=900 -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder tests

# The unit tier alone, on two workers: it is CPU-bound (docs/testing.md: the tiers and their times).
test-unit: install
	pytest -ra --timeout=900 -n 2 --dist loadfile tests/unit

# The gate, first in `make test` and CI: lint, formatting and types of the service's code
# (pyproject.toml: [tool.ruff], [tool.mypy]).
check: install
	ruff check chat handler.py
	ruff format --check chat handler.py
	mypy

# Mutation testing (docs/mutation.md): mutmut changes the code one mutant at a time in a copy
# (mutants/) and runs the unit tests that reach it, at most 2 at once (2 cores, shared). Slow,
# so not part of `make test`. MUTANTS='chat.history.*' (mutmut's names, globs) tries only
# those; mutmut remembers results, so a run picks up where the last one stopped. The tests
# import scripts/service_config, which runs node_modules/.bin/sls from the copy's root.
MUTANTS ?=
mutate: install
	mkdir -p mutants && ln -sfn ../node_modules mutants/node_modules
	mutmut run --max-children 2 $(MUTANTS)
	python scripts/mutation_score.py

# REVIEW=example: every message goes through the example review function (docs/moderation.md).
offline: export OFFLINE_REVIEW = $(REVIEW)
offline: install
	python scripts/offline.py

# Who the token is for: FOR=alice. USER is also your login name, so it counts only when it is
# given on the command line (`make token USER=alice` works; `make token` alone is an error).
token: export DEV_TOKEN_USER = $(or $(FOR),$(if $(filter command line,$(origin USER)),$(USER)))
# Its errors start with "make token:", what the user typed.
token: export DEV_TOKEN_CALLER = make token
# HOURS=0.05 (validity), CHANNELS='team-*,lobby' and MODERATES=lobby (the token's claims).
token: export DEV_TOKEN_HOURS = $(HOURS)
token: export DEV_TOKEN_CHANNELS = $(CHANNELS)
token: export DEV_TOKEN_MODERATES = $(MODERATES)
# ISSUER=cognito: alice or bob sign in to the local Cognito user pool; its ID token.
token: export DEV_TOKEN_ISSUER = $(ISSUER)
token: install
	@python scripts/dev_token.py

# POST /publish as the app's backend would (scripts/publish.py, the SigV4 example), to the running
# make offline: CHANNEL=deploys or TO=alice or ROOM=1, SENDER=ci-bot, CONTENT='build 812 is green'.
publish: export PUBLISH_CHANNEL = $(CHANNEL)
publish: export PUBLISH_TO = $(TO)
publish: export PUBLISH_ROOM = $(ROOM)
publish: export PUBLISH_SENDER = $(SENDER)
publish: export PUBLISH_CONTENT = $(CONTENT)
publish: install
	@python scripts/publish.py

# The events of the running make offline, one JSON line each, as they arrive (docs/events.md).
events: install
	@python scripts/events_tail.py

bench: install
	python bench/broadcast.py
	python bench/broadcast.py --channel
	python bench/offline_broadcast.py
	python bench/broadcast_capacity.py
	python bench/broadcast_capacity.py --budget 8000 --concurrency 8
	python bench/fanout_offline.py
	python bench/rate_limit.py
	python bench/review.py
	python bench/offline_reads.py
	python bench/typing_posts.py
	python bench/costs.py
	python bench/seq_throughput.py
	python bench/offline_flood.py
	python bench/publish.py
	python bench/verify.py
	python bench/events_latency.py
	python bench/rounds.py
	python bench/quota.py
	python bench/offline_rounds.py --only small
	python bench/offline_rounds.py --only busy

package: install
	sls package
	@python -c "import os; print('.serverless/serverless-websocket.zip:', os.path.getsize('.serverless/serverless-websocket.zip'), 'bytes')"

# Before `sls deploy`, with your AWS credentials: the Powertools layer's parameter in the target
# Region, the token secret, API Gateway's CloudWatch role (scripts/preflight.py says what to do).
STAGE ?= dev
REGION ?=
preflight: install
	python scripts/preflight.py --stage $(STAGE) $(if $(REGION),--region $(REGION)) $(if $(POWERTOOLS_PARAMETER),--powertools-parameter $(POWERTOOLS_PARAMETER))

# web/chat-page.png for the README, on make offline's ports. Installs with apt-get what it lacks
# of Debian's chromium, chromium-driver, fonts-nanum and fonts-noto-color-emoji (Korean, emoji).
screenshot: install
	python scripts/screenshot.py

clean:
	rm -rf .serverless .serverless-requirements-cache .pytest_cache .offline mutants
