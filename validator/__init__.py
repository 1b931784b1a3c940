"""gitops-validate: render GitOps apps the way Argo CD does, schema-check them offline, apply policy."""

__version__ = "0.1.0"
#: The config file at the repository root (here so that `gitops-validate --help` can name it without importing config).
CONFIG_NAME = ".gitops-validator.yaml"
