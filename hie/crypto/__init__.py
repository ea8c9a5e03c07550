"""Secrets at rest: field encryption, blind indexes, keys and their rotation, masking.

Resident ID numbers and phone numbers are stored only as :class:`FieldCipher` ciphertext
plus a :class:`BlindIndex` value for exact lookup; responses show them masked.
"""

from hie.crypto.blind_index import BlindIndex, index_key_id
from hie.crypto.fields import DecryptionError, FieldCipher, envelope_key_id
from hie.crypto.keyring import (
    ENV_ENCRYPTION,
    ENV_INDEX,
    Keyring,
    KeyringError,
    KeySet,
    UnknownKey,
    keyring_path,
    load_keyring,
)
from hie.crypto.masking import mask_name, mask_phone, mask_resident_id
from hie.crypto.rotation import Rewrapped, SecretRow, needs_rewrap, rewrap

__all__ = [
    "ENV_ENCRYPTION",
    "ENV_INDEX",
    "BlindIndex",
    "DecryptionError",
    "FieldCipher",
    "KeySet",
    "Keyring",
    "KeyringError",
    "Rewrapped",
    "SecretRow",
    "UnknownKey",
    "envelope_key_id",
    "index_key_id",
    "keyring_path",
    "load_keyring",
    "mask_name",
    "mask_phone",
    "mask_resident_id",
    "needs_rewrap",
    "rewrap",
]
