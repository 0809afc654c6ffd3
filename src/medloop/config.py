"""Settings read from the environment (prefix MEDLOOP_), built at the edge and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from medloop.exceptions import ConfigError

DEVELOPMENT_SECRET = "medloop-development-secret-do-not-use-in-production"


class Settings(BaseSettings):
    """Deployment settings.

    `MEDLOOP_HOME` holds the database, blobs and models; `MEDLOOP_DATABASE_URL` defaults
    to SQLite inside it; `MEDLOOP_DATA_DIR` is searched for public datasets before any
    download; `MEDLOOP_SECRET_KEY` keys pseudonyms and sessions and has no usable default
    outside development.
    """

    model_config = SettingsConfigDict(env_prefix="MEDLOOP_", extra="ignore")

    home: Path = Path(".medloop")
    database_url: str | None = None
    data_dir: Path | None = None
    secret_key: str | None = None
    environment: Literal["development", "production"] = "development"

    @model_validator(mode="after")
    def _check_secret(self) -> Settings:
        if self.environment == "production" and (
            not self.secret_key or self.secret_key == DEVELOPMENT_SECRET
        ):
            raise ConfigError("MEDLOOP_SECRET_KEY must be set to a private value in production")
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'medloop.db').resolve()}"

    @property
    def resolved_secret_key(self) -> bytes:
        return (self.secret_key or DEVELOPMENT_SECRET).encode()

    @property
    def blob_dir(self) -> Path:
        return self.home / "blobs"

    @property
    def model_dir(self) -> Path:
        return self.home / "models"
