"""Settings read from the environment (``HOSTPLANE_*``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Settings:
    database_url: str | None = None
    data_dir: Path = Path("var")
    admin_token: str | None = None
    master_key: str | None = None
    rate_limit_per_minute: int = 60
    read_your_writes_timeout: float = 5.0
    pool_size: int = 10

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls(
            database_url=env.get("HOSTPLANE_DATABASE_URL") or None,
            data_dir=Path(env.get("HOSTPLANE_DATA_DIR", "var")),
            admin_token=env.get("HOSTPLANE_ADMIN_TOKEN") or None,
            master_key=env.get("HOSTPLANE_MASTER_KEY") or None,
            rate_limit_per_minute=int(env.get("HOSTPLANE_RATE_LIMIT_PER_MINUTE", "60")),
            read_your_writes_timeout=float(env.get("HOSTPLANE_READ_YOUR_WRITES_TIMEOUT", "5")),
            pool_size=int(env.get("HOSTPLANE_POOL_SIZE", "10")),
        )
