"""FHIR R4 knowledge shared by every layer: validation, canonical JSON, bundles.

- :mod:`hie.fhir.types`: the resource types hie serves (``SERVED_TYPES``).
- :mod:`hie.fhir.validation`: ``load_validator()`` -> ``Validator.validate/check``.
- :mod:`hie.fhir.definitions`: the R4 element tables (package data).
- :mod:`hie.fhir.structure`, :mod:`hie.fhir.r4b`: the two halves of validation.
- :mod:`hie.fhir.definitions_build`: regenerates the package data from the R4 definitions.
"""
