"""One typed settings object, read from the environment (and `.env`).

Every name can be set as an environment variable: `DATABASE_URL`, `IVR_LOOKUP_KEY`,
`IVR_PIN_MAX_ATTEMPTS`, ... Service clients are built from these by the caller
and passed in; nothing here holds a connection.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_LOOKUP_KEY = "development-only-lookup-key-change-me"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IVR_", env_file=".env", extra="ignore")

    #: any SQLAlchemy URL; the async driver is picked for it (aiosqlite, asyncpg)
    database_url: str = Field(default="sqlite:///ivr.db", validation_alias="DATABASE_URL")
    #: key for the keyed hashes that let card and ID numbers be found without storing them
    lookup_key: SecretStr = SecretStr(DEV_LOOKUP_KEY)
    #: wrong PINs in a row that lock phone banking
    pin_max_attempts: int = Field(default=3, ge=1, le=10)
    #: scrypt cost for PIN hashes (2**n); 14 takes ~40 ms a check here
    pin_hash_cost: int = Field(default=14, ge=10, le=20)
    #: the central switch: "embedded" (the ledger on the same database) or
    #: iso8583://HOST:PORT[?timeout=SECONDS&echo=SECONDS] (see docs/iso8583.md)
    switch_url: str = Field(default="embedded", validation_alias="SWITCH_URL")
    #: days a verbal card-loss report holds unless confirmed in a branch
    card_loss_days: int = 5
    #: default limits for phone transfers, in yuan
    transfer_limit_per_transaction: int = 50_000
    transfer_limit_daily: int = 100_000
    #: Twilio: the account's auth token, which signs every webhook (Twilio's own variable)
    twilio_auth_token: SecretStr = Field(default=SecretStr(""), validation_alias="TWILIO_AUTH_TOKEN")
    #: Twilio: the account, for the REST API (SMS, outbound calls)
    twilio_account_sid: str = Field(default="", validation_alias="TWILIO_ACCOUNT_SID")
    #: Twilio: the number SMS and outbound calls come from (E.164)
    twilio_from_number: str = Field(default="", validation_alias="TWILIO_FROM_NUMBER")
    #: the public URL Twilio calls (scheme and host, such as https://ivr.bank.example),
    #: when the app runs behind a proxy; signatures are checked against it
    twilio_public_url: str = ""
    #: TaskRouter workflow for <Enqueue>; with it, the screen-pop data go as task attributes
    twilio_workflow_sid: str = ""

    @field_validator("database_url")
    @classmethod
    def _plain_url(cls, value: str) -> str:
        if "://" not in value:
            raise ValueError("DATABASE_URL must be a URL such as sqlite:///ivr.db "
                             "or postgresql://user@127.0.0.1/ivr")
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
