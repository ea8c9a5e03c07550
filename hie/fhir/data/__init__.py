"""Package data of hie.fhir (generated; see README.md here)."""
