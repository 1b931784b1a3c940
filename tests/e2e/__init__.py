"""The end-to-end suite (make e2e): see docs/testing.md."""
