import base64
import json
import os
import stat
from pathlib import Path

import pytest

from hie.crypto import (
    ENV_ENCRYPTION,
    ENV_INDEX,
    BlindIndex,
    DecryptionError,
    FieldCipher,
    Keyring,
    KeyringError,
    KeySet,
    SecretRow,
    envelope_key_id,
    keyring_path,
    load_keyring,
    needs_rewrap,
    rewrap,
)

RID = "510703198001011232"


def b64key(byte: int) -> str:
    return base64.b64encode(bytes([byte]) * 32).decode()


def test_round_trip_and_no_plaintext_in_envelope(tmp_path: Path) -> None:
    ring = load_keyring(tmp_path, environ={})
    cipher = FieldCipher(ring.encryption)
    sealed = cipher.encrypt(RID, b"patient.resident_id")
    assert sealed.startswith(f"hie1.{ring.encryption.current}.")
    assert RID not in sealed
    assert "1980" not in sealed
    assert cipher.decrypt(sealed, b"patient.resident_id") == RID
    # a fresh nonce each time: equal plaintexts do not give equal ciphertexts
    assert cipher.encrypt(RID, b"patient.resident_id") != sealed
    assert envelope_key_id(sealed) == ring.encryption.current


def test_tampering_and_wrong_context_fail(tmp_path: Path) -> None:
    cipher = FieldCipher(load_keyring(tmp_path, environ={}).encryption)
    sealed = cipher.encrypt("13812345678", b"phone")
    with pytest.raises(DecryptionError, match="authentication"):
        cipher.decrypt(sealed, b"resident_id")
    head, _, body = sealed.rpartition(".")
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    with pytest.raises(DecryptionError):
        cipher.decrypt(f"{head}.{flipped}", b"phone")
    with pytest.raises(DecryptionError, match="not a hie1"):
        cipher.decrypt("13812345678")
    with pytest.raises(DecryptionError, match="no key 'zz'"):
        cipher.decrypt("hie1.zz." + body, b"phone")
    # relabelling the key id is caught by the associated data, not only by the key lookup
    ring = load_keyring(tmp_path, environ={})
    same_key_new_id = KeySet("e2", {"e2": ring.encryption.key(ring.encryption.current)})
    with pytest.raises(DecryptionError, match="authentication"):
        FieldCipher(same_key_new_id).decrypt("hie1.e2." + body, b"phone")


def test_keyring_file_is_created_once_with_private_permissions(tmp_path: Path) -> None:
    first = load_keyring(tmp_path, environ={})
    path = keyring_path(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    again = load_keyring(tmp_path, environ={})
    assert again.encryption == first.encryption
    assert again.index == first.index
    assert [p.name for p in path.parent.iterdir()] == ["keyring.json"]


def test_keyring_readable_by_others_is_refused(tmp_path: Path) -> None:
    load_keyring(tmp_path, environ={})
    os.chmod(keyring_path(tmp_path), 0o644)
    with pytest.raises(KeyringError, match="chmod 600"):
        load_keyring(tmp_path, environ={})


def test_malformed_keyring_names_the_file(tmp_path: Path) -> None:
    path = keyring_path(tmp_path)
    path.parent.mkdir(parents=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b'{"format": 1, "encryption": {"current": "a", "keys": {}}}')
    os.close(fd)
    with pytest.raises(KeyringError, match=r"keyring\.json: malformed keyring"):
        load_keyring(tmp_path, environ={})


def test_keys_from_environment(tmp_path: Path) -> None:
    env = {ENV_ENCRYPTION: f"e2:{b64key(2)},e1:{b64key(1)}", ENV_INDEX: f"i1:{b64key(9)}"}
    ring = load_keyring(tmp_path, environ=env)
    assert ring.encryption.current == "e2"
    assert set(ring.encryption.keys) == {"e1", "e2"}
    assert ring.index.key("i1") == bytes([9]) * 32
    assert not keyring_path(tmp_path).exists()
    with pytest.raises(KeyringError, match="cannot be saved"):
        ring.save()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({ENV_ENCRYPTION: f"e1:{b64key(1)}"}, "HIE_KEYS_INDEX is not"),
        ({ENV_ENCRYPTION: "e1", ENV_INDEX: f"i:{b64key(1)}"}, "expected 'id:base64key"),
        ({ENV_ENCRYPTION: "e1:***", ENV_INDEX: f"i:{b64key(1)}"}, "not valid base64"),
        ({ENV_ENCRYPTION: "e1:AAAA", ENV_INDEX: f"i:{b64key(1)}"}, "has 3 bytes, expected 32"),
    ],
)
def test_bad_environment_keys_are_explained(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    with pytest.raises(KeyringError, match=message):
        load_keyring(tmp_path, environ=env)


def test_blind_index_is_stable_normalised_and_kind_separated(tmp_path: Path) -> None:
    ring = load_keyring(tmp_path, environ={})
    blind = BlindIndex(ring.index)
    a = blind.value("resident_id", "44011320141005001x")
    assert a == blind.value("resident_id", " 44011320141005001X ")
    assert a.startswith(ring.index.current + ".")
    assert "4401" not in a.partition(".")[2]
    assert blind.value("phone", "+86 138-1234-5678") == blind.value("phone", "13812345678")
    assert blind.value("phone", "13812345678") != blind.value("resident_id", "13812345678")
    assert blind.value("resident_id", RID) != blind.value("resident_id", RID[:-1] + "3")
    other = BlindIndex(KeySet.generate("i"))
    assert other.value("resident_id", RID) != blind.value("resident_id", RID)


def test_rotation_keeps_old_values_readable_and_rewraps_them(tmp_path: Path) -> None:
    ring = load_keyring(tmp_path, environ={})
    cipher, blind = FieldCipher(ring.encryption), BlindIndex(ring.index)
    rows = [
        SecretRow(
            i, cipher.encrypt(f"1381234{i:04d}", b"phone"), blind.value("phone", f"1381234{i:04d}")
        )
        for i in range(5)
    ]
    new_ring = ring.rotated(index=True)
    new_ring.save()
    reloaded = load_keyring(tmp_path, environ={})
    assert reloaded.encryption.current == new_ring.encryption.current != ring.encryption.current
    new_cipher, new_blind = FieldCipher(reloaded.encryption), BlindIndex(reloaded.index)

    # before re-encryption: old ciphertexts decrypt and lookups still find old indexes
    assert new_cipher.decrypt(rows[0].ciphertext, b"phone") == "13812340000"
    assert rows[0].index in new_blind.lookup_values("phone", "13812340000")

    fresh = SecretRow(
        99, new_cipher.encrypt("13900000000", b"phone"), new_blind.value("phone", "13900000000")
    )
    out = list(rewrap([*rows, fresh], new_cipher, context=b"phone", blind=new_blind, kind="phone"))
    assert [r.row for r in out] == [0, 1, 2, 3, 4]  # the current row is skipped
    for r in out:
        assert new_cipher.is_current(r.ciphertext)
        assert r.index == new_blind.value("phone", f"1381234{r.row:04d}")
        assert not needs_rewrap(SecretRow(r.row, r.ciphertext, r.index), new_cipher, new_blind)

    # once everything is rewrapped the old keys can be retired
    retired = reloaded.retired(ring.encryption.current).retired(ring.index.current)
    assert list(retired.encryption.keys) == [reloaded.encryption.current]
    final = FieldCipher(retired.encryption)
    assert final.decrypt(out[0].ciphertext, b"phone") == "13812340000"
    with pytest.raises(DecryptionError, match="no key"):
        final.decrypt(rows[0].ciphertext, b"phone")
    with pytest.raises(KeyringError, match="is current"):
        retired.retired(retired.encryption.current)


def test_saved_keyring_is_private_and_round_trips(tmp_path: Path) -> None:
    ring = Keyring.generate(tmp_path / "k" / "ring.json")
    path = ring.save()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert Keyring.from_json(data) == Keyring(ring.encryption, ring.index)
