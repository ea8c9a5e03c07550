"""Adapters: ways in for hospital systems that do not speak FHIR."""
