"""The CapabilityStatement: exactly what this server supports, nothing more."""

from __future__ import annotations

from typing import Any

from hie.exchange import Exchange

_INTERACTIONS = [
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
]


def capability_statement(exchange: Exchange, software_version: str) -> dict[str, Any]:
    resources = []
    for rtype in sorted(exchange.resource_types):
        resources.append(
            {
                "type": rtype,
                "interaction": [{"code": code} for code in _INTERACTIONS],
                "versioning": "versioned-update",
                "readHistory": True,
                "updateCreate": True,
                "conditionalCreate": True,
                "conditionalRead": "not-supported",
                "conditionalUpdate": True,
                "conditionalDelete": "single",
                "searchParam": [
                    {
                        "name": param["name"],
                        "definition": param["definition"],
                        "type": param["type"],
                    }
                    for param in exchange.search_parameters(rtype)
                ],
                "operation": [
                    {
                        "name": "validate",
                        "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate",
                    }
                ],
            }
        )
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-28",
        "publisher": "hie",
        "kind": "instance",
        "software": {"name": "hie", "version": software_version},
        "implementation": {
            "description": "Mianyang health information exchange",
            "url": exchange.base_url,
        },
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "cors": False,
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "SMART-on-FHIR",
                                }
                            ],
                            "text": "OAuth2 bearer tokens with SMART v2 scopes",
                        }
                    ],
                    "description": "Every endpoint except /metadata requires Authorization: Bearer.",
                },
                "resource": resources,
                "interaction": [
                    {"code": "transaction"},
                    {"code": "batch"},
                    {"code": "history-system"},
                ],
            }
        ],
    }
