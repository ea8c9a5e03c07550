"""Package data of terminology (generated; see README.md here)."""
