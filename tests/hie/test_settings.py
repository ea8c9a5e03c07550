from pathlib import Path

import pytest

from hie.settings import Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_default_toml_matches_model_defaults() -> None:
    assert load_settings(environ={}, config_dir=ROOT / "config") == Settings()


def test_env_overrides_section_keys_and_contract_names(tmp_path: Path) -> None:
    env = {
        "HIE_DATABASE_URL": "postgresql+psycopg://x/y",
        "HIE_HTTP_PORT": "9090",
        "HIE_HOST": "0.0.0.0",
        "HIE_HL7_ACCEPT_UNREGISTERED": "true",
        "HIE_DICOM_AET": "CITY",
        "HIE_DATA_DIR": str(tmp_path),
    }
    s = load_settings(environ=env, config_dir=ROOT / "config")
    assert s.database.url == "postgresql+psycopg://x/y"
    assert s.http.port == 9090
    assert s.host == "0.0.0.0"
    assert s.hl7.accept_unregistered is True
    assert s.dicom.aet == "CITY"
    assert s.data_dir == tmp_path


def test_local_file_layers_over_default(tmp_path: Path) -> None:
    (tmp_path / "default.toml").write_text("[http]\nport = 1\n")
    (tmp_path / "local.toml").write_text("[http]\nport = 2\n")
    assert load_settings(environ={}, config_dir=tmp_path).http.port == 2


def test_bad_values_name_the_setting(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"http\.port"):
        load_settings(environ={"HIE_HTTP_PORT": "eighty"}, config_dir=tmp_path)
    (tmp_path / "default.toml").write_text("[http\n")
    with pytest.raises(SettingsError, match=r"default\.toml"):
        load_settings(environ={}, config_dir=tmp_path)
