"""In-memory storage twin for tests."""
