"""Code systems, value sets and concept maps. Imports nothing else of the project."""
