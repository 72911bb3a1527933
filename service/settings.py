"""Service settings, read from INITSERVE_* environment variables (README has the table)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INITSERVE_", extra="ignore")

    host: str = Field("127.0.0.1", description="address to bind")
    port: int = Field(8000, ge=1, le=65535, description="port to bind")
    workers: int = Field(1, ge=1, description="uvicorn worker processes")
    max_elements: int = Field(1 << 28, ge=1, description="largest tensor (elements) for binary formats")
    max_json_elements: int = Field(1 << 22, ge=1, description="largest tensor (elements) for JSON output")
    max_stats_elements: int = Field(1 << 26, ge=1, description="largest tensor (elements) /stats will analyse")
    log_level: str = Field("info", description="uvicorn log level")


@lru_cache
def get_settings() -> Settings:
    return Settings()
