"""Settings (pydantic-settings, prefix ``ELICENSE_``), read once by ``get_settings()``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from license_core.errors import ConfigurationError

__all__ = ["Settings", "get_settings"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ELICENSE_", extra="ignore")

    home: Path = Field(default=Path("./elicense-data"),
                       description="data directory: database, blobs, dev PKI")
    database_url: str | None = Field(default=None, description="any SQLAlchemy URL")
    base_url: str = Field(default="http://127.0.0.1:8000",
                          description="public URL written into QR codes and certificates")
    environment: str = Field(default="local", description="local | test | production")
    max_upload_mb: int = Field(default=25, ge=1, le=1024)
    secret_key: str | None = Field(
        default=None, description="data-protection secret (holder codes, stored keys); "
        "required in production; locally generated into ELICENSE_HOME when unset")
    verify_timeout_s: float = Field(default=20.0, gt=0)
    verify_memory_mb: int = Field(default=1024, ge=128)
    public_rate_limit_per_minute: int = Field(default=600, ge=1)
    pkcs11_module: str | None = Field(
        default=None, description="PKCS#11 module (e.g. an HSM's, or SoftHSM2's); when set, "
        "new department seal keys are generated inside the token")
    pkcs11_token_label: str | None = None
    pkcs11_pin: str | None = None
    softhsm2_conf: str | None = Field(default=None,
                                      description="SoftHSM2 configuration file, if the module "
                                      "is SoftHSM2 and SOFTHSM2_CONF is not set")
    demo_catalog: bool = True

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'elicense.db').resolve()}"

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024

    def check_production(self) -> None:
        """Raises ConfigurationError when production would run on development material."""
        if not self.is_production:
            return
        if not self.secret_key or len(self.secret_key) < 32 or "change" in self.secret_key:
            raise ConfigurationError(
                "production needs ELICENSE_SECRET_KEY: at least 32 random characters")
        if self.resolved_database_url.startswith("sqlite"):
            raise ConfigurationError("production needs ELICENSE_DATABASE_URL (PostgreSQL)")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
