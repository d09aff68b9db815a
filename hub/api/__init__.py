"""The hub REST API under /api/v1."""
