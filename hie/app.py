"""Application factory (assembled in the core issue)."""
