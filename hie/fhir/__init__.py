"""FHIR R4 knowledge shared by every layer: validation, canonical JSON, bundles."""
