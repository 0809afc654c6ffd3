"""Settings read from the environment (prefix MEDLOOP_), built at the edge and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from medloop.exceptions import ConfigError

DEVELOPMENT_SECRET = "medloop-development-secret-do-not-use-in-production"
#: The shortest MEDLOOP_SECRET_KEY production accepts.
MIN_SECRET_LENGTH = 32


class Settings(BaseSettings):
    """Deployment settings.

    `MEDLOOP_HOME` holds the database, blobs and models; `MEDLOOP_DATABASE_URL` defaults
    to SQLite inside it; `MEDLOOP_DATA_DIR` is searched for public datasets before any
    download; `MEDLOOP_SECRET_KEY` keys pseudonyms and sessions and has no usable default
    outside development; `MEDLOOP_DATE_SHIFT_KEY` keys each patient's date shift
    (`medloop.ingest.dateshift`; without it the key is the file `date_shift_key_file` in
    the home, created with a random key on first use); `MEDLOOP_IDLE_SIGN_OUT_MINUTES`
    signs an idle browser out; `MEDLOOP_JOBS` processes run bootstrap refits.
    """

    model_config = SettingsConfigDict(env_prefix="MEDLOOP_", extra="ignore")

    home: Path = Path(".medloop")
    database_url: str | None = None
    data_dir: Path | None = None
    secret_key: str | None = None
    date_shift_key: str | None = None
    environment: Literal["development", "production"] = "development"
    #: Minutes without a key press, click or touch after which a browser tab signs its
    #: session out (every tab of the browser counts; 0: never); the server refuses a
    #: session cookie unused for that long too (`web.sessions`). Shared workstations on a
    #: ward must not stay signed in: 15 minutes is the usual hospital setting.
    idle_sign_out_minutes: float = Field(default=15.0, ge=0)
    #: Worker processes that run a risk or treatment model's bootstrap refits (39 or more
    #: fits each); 1 runs them in the training process. The models do not depend on it.
    jobs: int = Field(default=1, ge=1)

    @field_validator("environment", mode="before")
    @classmethod
    def _environment_name(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("date_shift_key")
    @classmethod
    def _long_date_shift_key(cls, value: str | None) -> str | None:
        if value is None or not value.strip():  # MEDLOOP_DATE_SHIFT_KEY= is unset
            return None
        if len(value.strip()) < MIN_SECRET_LENGTH:
            raise ConfigError(
                f"MEDLOOP_DATE_SHIFT_KEY must be a private value of {MIN_SECRET_LENGTH} or "
                "more characters (or unset: a random key is then kept in the home)"
            )
        return value

    @model_validator(mode="after")
    def _check_secret(self) -> Settings:
        if self.environment == "production" and (
            not self.secret_key
            or self.secret_key == DEVELOPMENT_SECRET
            or len(self.secret_key) < MIN_SECRET_LENGTH
        ):
            raise ConfigError(
                f"MEDLOOP_SECRET_KEY must be a private value of {MIN_SECRET_LENGTH} or more "
                "characters in production (e.g. python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))')"
            )
        return self

    @property
    def uses_development_key(self) -> bool:
        """True when pseudonyms are keyed with the public development key (no
        MEDLOOP_SECRET_KEY): anyone could recompute them from the raw ids."""
        return not self.secret_key or self.secret_key == DEVELOPMENT_SECRET

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'medloop.db').resolve()}"

    @property
    def resolved_secret_key(self) -> bytes:
        return (self.secret_key or DEVELOPMENT_SECRET).encode()

    @property
    def date_shift_key_file(self) -> Path:
        """Where the date-shift key is kept when `date_shift_key` is not set."""
        return self.home / "date-shift.key"

    @property
    def blob_dir(self) -> Path:
        return self.home / "blobs"

    @property
    def model_dir(self) -> Path:
        return self.home / "models"
