"""gitops-validate: render GitOps apps the way Argo CD does, schema-check them offline, apply policy."""

__version__ = "0.1.0"
