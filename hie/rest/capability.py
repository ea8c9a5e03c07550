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


_VALIDATE = {
    "name": "validate",
    "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate",
}
_EVERYTHING = {
    "name": "everything",
    "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
    "documentation": "_since, _type and _count, with next/previous paging",
}
# The master patient index's operations (docs/identity.md).
_IDENTITY = [
    {
        "name": "ihe-pix",
        "definition": "https://profiles.ihe.net/ITI/PIXm/OperationDefinition/IHE.PIXm.pix",
    },
    {"name": "match", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-match"},
    *(
        {"name": op, "definition": f"urn:hie:operation:{op}"}
        for op in ("link", "unlink", "merge", "unmerge")
    ),
]
# Parameters every type accepts that shape results rather than select resources.
_RESULT_PARAMS = (
    "_sort (several keys, - for descending), _count, _include and _revinclude (:iterate, *), "
    "_summary (true, text, data, count, false), _elements, _total (none, estimate, accurate); "
    "paging by next/previous links. Unknown parameters are ignored with a warning, or "
    "rejected under Prefer: handling=strict."
)


def _security(token_url: str | None) -> dict[str, Any]:
    service: dict[str, Any] = {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                "code": "SMART-on-FHIR",
            }
        ],
        "text": "OAuth2 bearer tokens with SMART v2 scopes",
    }
    security: dict[str, Any] = {
        "cors": False,
        "service": [service],
        "description": "Every endpoint except /metadata requires Authorization: Bearer.",
    }
    if token_url:
        # SMART App Launch: the token endpoint, also in .well-known/smart-configuration.
        security["extension"] = [
            {
                "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                "extension": [{"url": "token", "valueUri": token_url}],
            }
        ]
        security["description"] += (
            " Registered clients get tokens at the token endpoint with client_credentials"
            " and private_key_jwt (SMART Backend Services)."
        )
    return security


def capability_statement(
    exchange: Exchange, software_version: str, token_url: str | None = None
) -> dict[str, Any]:
    resources = []
    for rtype in sorted(exchange.resource_types):
        includes, revincludes = exchange.search_includes(rtype)
        operations = [_VALIDATE]
        if rtype == "Patient":
            operations += [_EVERYTHING, *(_IDENTITY if exchange.identity is not None else [])]
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
                "searchInclude": includes,
                "searchRevInclude": revincludes,
                "searchParam": exchange.search_parameters(rtype),
                "operation": operations,
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
                "security": _security(token_url),
                "documentation": _RESULT_PARAMS,
                "resource": resources,
                "compartment": ["http://hl7.org/fhir/CompartmentDefinition/patient"],
                "interaction": [
                    {"code": "transaction"},
                    {"code": "batch"},
                    {"code": "history-system"},
                ],
            }
        ],
    }
