"""HL7 v2 over MLLP: framing, durable inbox, ACKs and mapping to FHIR."""
