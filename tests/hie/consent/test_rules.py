"""Provision trees and rules, without a database: what a Consent says, and the policy
file (the SQL side of the same rules is covered by the access matrix)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hie.consent.policy import V3_ACT_CODE, load_policy, policy_from
from hie.consent.provisions import parse_consent
from hie.consent.rules import Caller, CardGrant, ResourceFacts, compile_rules
from hie.consent.shapes import shape_of
from tests.hie.consent.test_access_matrix import actor, consent, purpose

NOW = datetime(2026, 6, 1, tzinfo=UTC)
HOSPITAL = Caller(frozenset({"Organization/b"}), "Organization/b", "TREAT", platform=False)
PLATFORM = Caller(frozenset({"Organization/c"}), "Organization/c", "PUBHLTH", platform=True)
HIV = (V3_ACT_CODE, "HIV")
POLICY = policy_from({})


def facts(rtype: str = "Observation", labels: frozenset[Any] = frozenset()) -> ResourceFacts:
    return ResourceFacts(rtype, frozenset({"p"}), labels, frozenset())


def decide(
    provision: dict[str, Any],
    what: ResourceFacts | None = None,
    caller: Caller = HOSPITAL,
    when: datetime = NOW,
    grants: list[CardGrant] | None = None,
) -> tuple[bool, str]:
    record = parse_consent(consent("x", "p", provision))
    assert record is not None
    rules = compile_rules(POLICY, caller, when, [record], grants or [])
    return rules.covers(what or facts())


def test_period_purpose_and_actor_limit_a_permit() -> None:
    period = {"type": "permit", "period": {"start": "2026-01-01", "end": "2026-12"}}
    assert decide(period)[0]
    assert not decide(period, when=datetime(2027, 1, 1, tzinfo=UTC))[0]
    assert decide(period, when=datetime(2026, 12, 31, 23, tzinfo=UTC))[0]
    research = {"type": "permit", "purpose": purpose("HRESCH")}
    assert not decide(research)[0]
    other = {"type": "permit", "actor": actor("Organization/z")}
    assert decide(other) == (False, "no consent or grant covers it")


def test_nested_exceptions_and_deny_wins() -> None:
    tree = {
        "type": "deny",
        "provision": [
            {
                "actor": actor("Organization/b"),  # no type: the opposite of its parent
                "provision": [
                    {"class": [{"code": "Condition"}]},
                ],
            }
        ],
    }
    ok, rule = decide(tree)
    assert ok
    assert rule == "permit: Consent/x.provision.provision[0]"
    ok, rule = decide(tree, facts("Condition"))
    assert not ok
    assert rule == "deny: Consent/x.provision.provision[0].provision[0]"
    assert not decide(
        tree, caller=Caller(frozenset({"Organization/q"}), "Organization/q", "TREAT", False)
    )[0]


def test_sensitive_resources_need_a_permit_that_names_them() -> None:
    hiv = facts(labels=frozenset({HIV}))
    ok, rule = decide({"type": "permit"}, hiv)
    assert not ok
    assert rule.startswith("sensitive (HIV)")
    named = {
        "type": "permit",
        "provision": [
            {"type": "permit", "securityLabel": [{"system": V3_ACT_CODE, "code": "HIV"}]}
        ],
    }
    assert decide(named, hiv)[0]
    assert decide(named)[0]


def test_platforms_need_their_name_and_a_purpose() -> None:
    assert not decide({"type": "permit"}, caller=PLATFORM)[0]
    assert not decide({"type": "permit", "actor": actor("Organization/c")}, caller=PLATFORM)[0]
    named = {"type": "permit", "actor": actor("Organization/c"), "purpose": purpose("PUBHLTH")}
    assert decide(named, caller=PLATFORM)[0]


def test_card_grants_are_for_treatment_within_their_period() -> None:
    grant = CardGrant("p", "Organization/b", NOW.replace(month=5), NOW.replace(month=7))
    refuse_all = {"type": "deny", "actor": actor("Organization/q")}
    assert decide(refuse_all, grants=[grant]) == (True, "permit: card-grant")
    assert not decide(refuse_all, grants=[grant], when=NOW.replace(month=8))[0]
    research = Caller(HOSPITAL.refs, HOSPITAL.organization, "HRESCH", platform=False)
    assert not decide(refuse_all, grants=[grant], caller=research)[0]
    assert not decide({"type": "deny"}, grants=[grant])[0]  # a deny wins over the grant
    assert not decide(refuse_all, facts(labels=frozenset({HIV})), grants=[grant])[0]


def test_only_active_privacy_consents_count_and_have_a_shape() -> None:
    given = consent("x", "p", {"type": "permit"})
    assert parse_consent(given) is not None
    assert shape_of(given) == shape_of(consent("y", "q", {"type": "permit"}))
    assert shape_of(given) != shape_of(consent("y", "q", {"type": "deny"}))
    for changed in (
        {"status": "inactive"},
        {"scope": {"coding": [{"code": "research"}]}},
        {"patient": {"reference": "Group/1"}},
    ):
        assert parse_consent({**given, **changed}) is None
        assert shape_of({**given, **changed}) is None


def test_the_policy_file(tmp_path: Path) -> None:
    policy = load_policy()
    assert HIV in policy.sensitive_labels
    assert policy.hidden_status == 404
    bad = tmp_path / "consent.toml"
    bad.write_text("hidden_status = 500\n")
    with pytest.raises(ValueError, match="403 or 404"):
        load_policy(bad)
    with pytest.raises(ValueError, match="unknown"):
        policy_from({"hiden_status": 403})
