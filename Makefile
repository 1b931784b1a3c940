# The README's two promises: `make validate` and `make test`. Both set themselves up first.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export PATH := $(CURDIR)/.tools/bin:$(CURDIR)/.venv/bin:$(PATH)

PYTEST_ARGS ?=

.PHONY: help setup validate test bench e2e e2e-build lint docs clean
help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: ## install the venv, pinned helm/kubeconform and offline schemas (idempotent)
	@scripts/setup.sh

validate: setup ## validate this repository with gitops-validate (ARGS=--capacity adds the capacity budget)
	gitops-validate $(ARGS)

test: setup ## run every test (helm, kubeconform, git and pre-commit for real), on both cores
	pytest -n 2 $(PYTEST_ARGS)

bench: setup ## time gitops-validate vs the floor, kubeconform, checkov, kube-score; rewrite docs/performance.md
	python scripts/bench.py $(BENCH_ARGS)

e2e-build: setup ## build the e2e harness once: etcd, Kubernetes, kwok, Argo CD from Go modules (+ redis)
	@scripts/e2e-build.sh

e2e: e2e-build ## the GitOps loop for real: control plane + Argo CD on loopback sync this repo (docs/testing.md)
	pytest -m e2e tests/e2e $(PYTEST_ARGS)

docs: setup ## regenerate docs/rules.md and the chart READMEs' values tables
	python -m gitops_validate.docs --write
	python scripts/chart_readme.py --write

include scripts/ops.mk

clean: ## remove caches (keeps .venv and .tools)
	rm -rf .cache .pytest_cache
