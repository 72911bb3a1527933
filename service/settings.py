"""Service settings, read from INITSERVE_* environment variables (README has the table)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.engine.parallel import available_cores


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INITSERVE_", extra="ignore")

    host: str = Field("127.0.0.1", description="address to bind")
    port: int = Field(8000, ge=1, le=65535, description="port to bind")
    workers: int = Field(1, ge=1, description="uvicorn worker processes")
    threads: int = Field(
        default_factory=available_cores, ge=1, description="engine threads per worker process (default: the cores)"
    )
    max_elements: int = Field(1 << 28, ge=1, description="largest tensor (elements) for binary formats")
    max_json_elements: int = Field(1 << 22, ge=1, description="largest tensor (elements) for JSON output")
    max_stats_elements: int = Field(1 << 26, ge=1, description="largest tensor (elements) /stats will analyse")
    max_request_elements: int = Field(1 << 29, ge=1, description="largest request (elements over all its tensors)")
    max_json_request_elements: int = Field(1 << 23, ge=1, description="largest JSON request (elements, all tensors)")
    max_file_bytes: int = Field(
        16 << 30, ge=1, description="largest checkpoint file served under /hub (bytes), streamed whatever its size"
    )
    memory_budget_bytes: int = Field(
        2 << 30, ge=1 << 20, description="bytes of tensor data being generated at once, across requests"
    )
    budget_wait_seconds: float = Field(2.0, ge=0, description="how long a request waits for budget before 503")
    budget_small_bytes: int = Field(
        16 << 20, ge=0, description="a buffered response holding at most this much of the memory budget is small"
    )
    budget_reserved_fraction: float = Field(
        0.125, ge=0, lt=1, description="share of the memory budget only small requests may use"
    )
    budget_max_share: float = Field(
        0.5, gt=0, le=1, description="most of the memory budget one large request may hold (more: 413)"
    )
    budget_unready_seconds: float = Field(
        10.0, gt=0, description="/readyz is 503 once requests have been refused for budget this long, none admitted"
    )
    max_body_bytes: int = Field(1 << 20, ge=1024, description="largest request body")
    timeout_seconds: float = Field(60.0, gt=0, description="time to the first response byte before 504")
    keep_alive_seconds: float = Field(
        5.0, gt=0, description="an idle connection (no request under way) is closed after this long without a byte"
    )
    header_timeout_seconds: float = Field(
        10.0, gt=0, description="a request's headers must arrive within this long of the connection or last response"
    )
    send_timeout_seconds: float = Field(
        30.0, gt=0, description="a client that takes none of a pending response for this long is cut off"
    )
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="comma-separated bearer tokens; empty: no authentication"
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="comma-separated allowed origins; empty: CORS off"
    )
    quota_rate: float = Field(
        0.0, ge=0, description="requests/s per API key (per client address without keys), per worker; 0: off"
    )
    quota_burst: int = Field(10, ge=1, description="requests a client may make at once above quota_rate")
    quota_concurrency: int = Field(
        0, ge=0, description="requests in flight per API key (per client address without keys), per worker; 0: off"
    )
    cache_bytes: int = Field(256 << 20, ge=0, description="in-process cache of recent responses (bytes); 0: off")
    stream_threshold_bytes: int = Field(
        8 << 20, ge=0, description="responses larger than this (and JSON of many tensors) are streamed chunk by chunk"
    )
    kernel_cache: Path | None = Field(
        None, description="numba kernels compiled ahead of time (`initserve kernels DIR`), copied to NUMBA_CACHE_DIR"
    )
    log_level: str = Field("info", description="log level (debug, info, warning, error)")
    log_format: Literal["json", "text"] = Field("json", description="access and error log format")

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("api_keys", mode="before")
    @classmethod
    def _keys(cls, value: object) -> object:
        """Only an empty value means no authentication: one that holds no key (` , `) is a mistake that would
        silently open the service, so the server refuses to start."""
        keys = cls._comma_separated(value)
        if isinstance(value, str) and value and not keys:
            raise ValueError(
                f"{value!r} holds no key, only commas and spaces; give the keys, or set it empty for no authentication"
            )
        return keys


@lru_cache
def get_settings() -> Settings:
    return Settings()
