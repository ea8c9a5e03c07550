"""Master patient index: matching source records to one enterprise patient per person.

Pure building blocks (no database): :class:`PersonRecord` (what a source Patient is mapped
to), :class:`Matcher` (deterministic rules, Fellegi-Sunter weights, blocking keys),
:func:`load_match_config` (``config/identity.toml``) and :func:`golden_record` (survivorship).
"""

from hie.identity.blocking import BlockIndex, blocking_keys
from hie.identity.compare import Prepared
from hie.identity.config import ConfigError, FieldWeights, MatchConfig, load_match_config
from hie.identity.estimate import Estimate, estimate
from hie.identity.matcher import Candidate, Comparison, Decision, Matcher, Outcome
from hie.identity.names import latin_key, name_forms, split_hanzi_name
from hie.identity.record import CARD_SOURCE, Identifier, PersonName, PersonRecord
from hie.identity.survivorship import golden_record, survivorship_order

__all__ = [
    "CARD_SOURCE",
    "BlockIndex",
    "Candidate",
    "Comparison",
    "ConfigError",
    "Decision",
    "Estimate",
    "FieldWeights",
    "Identifier",
    "MatchConfig",
    "Matcher",
    "Outcome",
    "PersonName",
    "PersonRecord",
    "Prepared",
    "blocking_keys",
    "estimate",
    "golden_record",
    "latin_key",
    "load_match_config",
    "name_forms",
    "split_hanzi_name",
    "survivorship_order",
]
