"""Package data: the generated search parameter definitions (see build_data)."""
