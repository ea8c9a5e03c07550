"""One frozen Settings object, built from config/*.toml and HIE_* environment variables.

Order of precedence (later wins): model defaults, ``config/default.toml``,
``config/local.toml`` (or the file named by ``HIE_CONFIG``), then the environment.
Every ``section.key`` is overridden by ``HIE_SECTION_KEY``; a top-level ``key`` by ``HIE_KEY``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DatabaseSettings(_Section):
    url: str = "sqlite:///var/hie.db"
    sqlite_synchronous: str = "FULL"
    pool_size: int = 8
    echo: bool = False


class DataSettings(_Section):
    dir: str = "var"


class HttpSettings(_Section):
    port: int = 8080
    workers: int = 2
    threads: int = 8
    base_url: str = ""
    max_body_bytes: int = 32 * 1024 * 1024


class AuthSettings(_Section):
    issuer: str = "hie"
    audience: str = "hie"
    token_ttl: int = 3600
    client_token_ttl: int = 300
    assertion_max_lifetime: int = 300
    session_ttl: int = 8 * 3600
    session_idle: int = 30 * 60
    login_account_failures: int = 5
    login_address_failures: int = 20
    login_window: int = 900
    password_log2_n: int = 15


class FhirSettings(_Section):
    default_count: int = 50
    max_count: int = 1000


class AuditSettings(_Section):
    max_batch: int = 512
    database_url: str = ""  # empty: the audit tables live in the main database
    pool_size: int = 4
    checkpoint_every: int = 10_000
    # How a group commit of read records reaches the disk: FULL fsyncs each commit; NORMAL
    # leaves it to the next WAL sync (SQLite synchronous=NORMAL, PostgreSQL
    # synchronous_commit=off). Writes' records commit with their data either way.
    synchronous: str = "NORMAL"
    # NORMAL: reads' records go to a per-process journal (one write; a crash of the
    # process loses none) drained into the chain every ``drain_interval`` seconds
    # (hie.audit.journal). Accesses are refused once draining has failed for
    # ``stale_after`` seconds. false: each read waits for its group commit.
    journal: bool = True
    drain_interval: float = 0.05
    stale_after: float = 2.0
    # Whether requests drain (every drain_interval) as well as a thread per process.
    # ``hie serve`` runs ``hie audit drain --follow`` and turns this off for its
    # processes, so no request waits for a drain; the threads remain the fallback.
    drain_in_requests: bool = True
    enabled: bool = True  # false only to measure what audit costs (bench/audit_overhead.py)


class MllpSettings(_Section):
    port: int = 2575
    read_timeout: float = 30.0
    idle_timeout: float = 600.0
    max_message_bytes: int = 16 * 1024 * 1024
    max_connections: int = 256
    tls_cert: str = ""
    tls_key: str = ""


class Hl7Settings(_Section):
    accept_unregistered: bool = False
    default_organization: str = ""
    default_charset: str = "GB18030"
    default_tz: str = "+08:00"
    workers: int = 2
    # Extra mapping processes (hie hl7 work) started by hie mllp; threads share one GIL.
    worker_processes: int = 1
    # Mapped messages applied per exchange commit (group commit; 1: one commit each).
    commit_batch: int = 8
    conceptmaps: str = ""
    application: str = "HIE"
    facility: str = ""


class DicomSettings(_Section):
    port: int = 11112
    aet: str = "HIE"
    accept_unregistered: bool = False
    duplicate_policy: str = "keep-first"
    timezone: str = "+08:00"
    dicomweb_url: str = ""
    poll_interval: float = 0.0002
    # ``hie dicom`` processes sharing the port (SO_REUSEPORT); 0: one per CPU core.
    processes: int = 0


class IdentitySettings(_Section):
    # Link every source Patient to an enterprise Patient (off only for tools and tests
    # that exercise plain FHIR storage; protected numbers are sealed either way).
    enabled: bool = True
    # Matching rules and thresholds of the master patient index (relative: to the repo root
    # when not found from the working directory).
    config: str = "config/identity.toml"
    max_candidates: int = 200


class CardSettings(_Section):
    qr_ttl: int = 60
    checkin_grant_hours: float = 24.0
    organization: str = "Organization/mianzhou-pass"


class ConsentSettings(_Section):
    # false: permit-all (benchmarks compare against it); the policy file is
    # config/consent.toml unless ``policy`` names another.
    enabled: bool = True
    policy: str = ""


class Settings(_Section):
    host: str = "127.0.0.1"
    database: DatabaseSettings = DatabaseSettings()
    data: DataSettings = DataSettings()
    http: HttpSettings = HttpSettings()
    auth: AuthSettings = AuthSettings()
    fhir: FhirSettings = FhirSettings()
    audit: AuditSettings = AuditSettings()
    mllp: MllpSettings = MllpSettings()
    hl7: Hl7Settings = Hl7Settings()
    dicom: DicomSettings = DicomSettings()
    card: CardSettings = CardSettings()
    identity: IdentitySettings = IdentitySettings()
    consent: ConsentSettings = ConsentSettings()

    @property
    def data_dir(self) -> Path:
        return Path(self.data.dir)

    @property
    def base_url(self) -> str:
        """Public base URL of the server, without a trailing slash."""
        if self.http.base_url:
            return self.http.base_url.rstrip("/")
        return f"http://{self.host}:{self.http.port}"

    @property
    def fhir_base_url(self) -> str:
        return self.base_url + "/fhir"

    @property
    def token_url(self) -> str:
        """The OAuth2 token endpoint: the ``aud`` every client assertion must carry."""
        return self.base_url + "/auth/token"

    @property
    def dicomweb_url(self) -> str:
        return self.dicom.dicomweb_url.rstrip("/") or self.base_url + "/dicomweb"

    def replace(self, **overrides: Any) -> Settings:
        """A copy with ``section__key=value`` or ``key=value`` overrides (for tests and tools)."""
        raw = self.model_dump()
        for name, value in overrides.items():
            section, _, key = name.partition("__")
            if key:
                raw[section][key] = value
            else:
                raw[section] = value
        return Settings.model_validate(raw)


class SettingsError(ValueError):
    """The configuration cannot be loaded; the message names the file or variable."""


def _section_names() -> list[str]:
    return [
        name
        for name, field in Settings.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, _Section)
    ]


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    sections = sorted(_section_names(), key=len, reverse=True)
    out: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith("HIE_") or name in ("HIE_CONFIG", "HIE_CONFIG_DIR"):
            continue
        rest = name[4:].lower()
        for section in sections:
            prefix = section + "_"
            if rest.startswith(prefix):
                fields = Settings.model_fields[section].annotation
                key = rest[len(prefix) :]
                if isinstance(fields, type) and key in getattr(fields, "model_fields", {}):
                    out.setdefault(section, {})[key] = value
                    break
        else:
            if rest in Settings.model_fields and rest not in sections:
                out[rest] = value
    return out


def load_settings(
    environ: Mapping[str, str] | None = None, config_dir: Path | None = None
) -> Settings:
    """Build the Settings from the config directory and the environment."""
    env = os.environ if environ is None else environ
    directory = config_dir or Path(env.get("HIE_CONFIG_DIR", "config"))
    raw: dict[str, Any] = Settings().model_dump()
    files = [directory / "default.toml"]
    files.append(Path(env["HIE_CONFIG"]) if env.get("HIE_CONFIG") else directory / "local.toml")
    for path in files:
        if path.is_file():
            try:
                _merge(raw, tomllib.loads(path.read_text(encoding="utf-8")))
            except tomllib.TOMLDecodeError as exc:
                raise SettingsError(f"{path}: {exc}") from exc
    _merge(raw, _env_overrides(env))
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise SettingsError(f"invalid configuration: {problems}") from exc
