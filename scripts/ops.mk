# Operations targets: the cluster side of the repo. The Makefile includes this file
# (`include scripts/ops.mk`); it also works on its own: make -f scripts/ops.mk bootstrap DRY_RUN=1
#
#   make bootstrap [DRY_RUN=1] [REPO_URL=...] [REVISION=...]   minikube + Argo CD + Secrets + root app
#   make teardown  [DRY_RUN=1] [DELETE_CLUSTER=1]               undo bootstrap (cluster kept by default)
#   make images    APP_SRC=<Phase 3 checkout> [DRY_RUN=1]       build both images into minikube
#
# REPO_URL, REVISION, ENV_FILE, BACKEND_SRC and FRONTEND_SRC reach the scripts through the
# environment (command-line variables are exported by make).

OPS_ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))..)
# Pinned helm from `make setup` first; the scripts find .venv's Python themselves.
OPS_ENV = PATH="$(OPS_ROOT)/.tools/bin:$$PATH" DRY_RUN="$(DRY_RUN)"

DRY_RUN ?=
DELETE_CLUSTER ?=
APP_SRC ?=

# On its own this file must not start a cluster by default.
ifeq ($(.DEFAULT_GOAL),)
.DEFAULT_GOAL := ops-help
endif

.PHONY: bootstrap teardown images ops-help
ops-help:
	@grep -E '^[a-z-]+:.*## ' $(lastword $(MAKEFILE_LIST)) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

bootstrap: ## start minikube, install Argo CD, create Secrets from .env, apply the root app (DRY_RUN=1: plan only)
	@$(OPS_ENV) bash "$(OPS_ROOT)/scripts/bootstrap.sh"

teardown: ## delete the root app (cascade) and Argo CD; DELETE_CLUSTER=1 also deletes minikube
	@$(OPS_ENV) bash "$(OPS_ROOT)/scripts/teardown.sh" $(if $(filter 1 true yes,$(DELETE_CLUSTER)),--delete-cluster)

images: ## build todo-backend and todo-frontend into minikube from APP_SRC=<Phase 3 checkout>
	@$(OPS_ENV) APP_SRC="$(APP_SRC)" bash "$(OPS_ROOT)/scripts/build-images.sh"
