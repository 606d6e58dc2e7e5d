"""Settings are checked when read: a bad ``GATEWAY_*`` value is refused with its variable and what it expects."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from gateway.config import Settings, SettingsError, setting


@dataclass(frozen=True)
class Extended(Settings):
    """The kinds of field other parts of the gateway declare, each in one line."""

    public_url: str = setting("", kind="url")
    metrics_agency_labels: bool = False
    relay_interval: float = setting(5.0, minimum=0.1)
    role: Literal["hub", "node"] = "hub"
    upstream_secret: str = setting("", secret=True)


def test_defaults_need_no_environment() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.data_dir == Path("var") and settings.lease_seconds == 300
    assert settings.database_url == "sqlite:///var/gateway.sqlite3" and settings.blob_dir == Path("var/blobs")


def test_every_field_is_read_from_its_variable() -> None:
    env = {
        "GATEWAY_DATA_DIR": "/srv/gw",
        "GATEWAY_DATABASE_URL": "postgresql+psycopg://gw@db.example/gateway",
        "GATEWAY_BLOB_DIR": "/mnt/blobs",
        "GATEWAY_MAX_DOCUMENT_BYTES": "1048576",
        "GATEWAY_LEASE_SECONDS": " 60 ",
        "GATEWAY_MAX_PENDING_ITEMS": "10",
        "GATEWAY_ACK_OVERDUE_HOURS": "0",
        "GATEWAY_TRUSTED_CERTS": "/etc/gw/ca.pem",
        "GATEWAY_OPERATOR_PASSWORD": "s3cret",
        "GATEWAY_PUBLIC_URL": "https://gw.example/soap",
        "GATEWAY_METRICS_AGENCY_LABELS": "Yes",
        "GATEWAY_RELAY_INTERVAL": "0.5",
        "GATEWAY_ROLE": "node",
    }
    settings = Extended.from_env(env)
    assert settings.data_dir == Path("/srv/gw") and settings.blob_dir == Path("/mnt/blobs")
    assert settings.database_url == "postgresql+psycopg://gw@db.example/gateway"
    assert (settings.max_document_bytes, settings.lease_seconds, settings.max_pending_items) == (1048576, 60, 10)
    assert settings.ack_overdue_hours == 0 and settings.trusted_certs == Path("/etc/gw/ca.pem")
    assert settings.operator_password == "s3cret" and "s3cret" not in repr(settings)
    assert settings.public_url == "https://gw.example/soap" and settings.metrics_agency_labels is True
    assert settings.relay_interval == 0.5 and settings.role == "node"


def test_empty_variables_count_as_unset() -> None:
    settings = Extended.from_env({"GATEWAY_LEASE_SECONDS": "", "GATEWAY_TRUSTED_CERTS": " ", "GATEWAY_ROLE": ""})
    assert (settings.lease_seconds, settings.trusted_certs, settings.role) == (300, None, "hub")


def test_overrides_win_over_the_environment() -> None:
    settings = Settings.from_env(
        {"GATEWAY_DATA_DIR": "/from/env", "GATEWAY_LEASE_SECONDS": "x"}, data_dir=Path("d"), lease_seconds=5
    )
    assert settings.data_dir == Path("d") and settings.lease_seconds == 5


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("GATEWAY_LEASE_SECONDS", "abc", "GATEWAY_LEASE_SECONDS must be an integer >= 1, not 'abc'"),
        ("GATEWAY_LEASE_SECONDS", "1.5", "GATEWAY_LEASE_SECONDS must be an integer >= 1, not '1.5'"),
        ("GATEWAY_MAX_PENDING_ITEMS", "0", "GATEWAY_MAX_PENDING_ITEMS must be an integer >= 1, not 0"),
        ("GATEWAY_MAX_DOCUMENT_BYTES", "-5", "GATEWAY_MAX_DOCUMENT_BYTES must be an integer >= 1, not -5"),
        ("GATEWAY_ACK_OVERDUE_HOURS", "-1", "GATEWAY_ACK_OVERDUE_HOURS must be an integer >= 0, not -1"),
        ("GATEWAY_RELAY_INTERVAL", "soon", "GATEWAY_RELAY_INTERVAL must be a number >= 0.1, not 'soon'"),
        ("GATEWAY_RELAY_INTERVAL", "0.01", "GATEWAY_RELAY_INTERVAL must be a number >= 0.1, not 0.01"),
        ("GATEWAY_RELAY_INTERVAL", "nan", "GATEWAY_RELAY_INTERVAL must be a number >= 0.1, not 'nan'"),
        (
            "GATEWAY_METRICS_AGENCY_LABELS",
            "maybe",
            "GATEWAY_METRICS_AGENCY_LABELS must be a boolean (1, true, yes, on or 0, false, no, off), not 'maybe'",
        ),
        ("GATEWAY_PUBLIC_URL", "gw.example/soap", "GATEWAY_PUBLIC_URL must be an http:// or https:// URL, not"),
        ("GATEWAY_PUBLIC_URL", "ftp://gw.example/", "GATEWAY_PUBLIC_URL must be an http:// or https:// URL, not"),
        ("GATEWAY_ROLE", "relay", "GATEWAY_ROLE must be one of hub, node, not 'relay'"),
    ],
)
def test_bad_values_name_the_variable_and_what_it_expects(variable: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as refused:
        Extended.from_env({variable: value})
    assert str(refused.value).startswith(message)


def test_secrets_are_not_repeated_in_the_message() -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"GATEWAY_DATABASE_URL": "postgres ql://gw:hunter2@db/gateway"})
    assert str(refused.value).startswith("GATEWAY_DATABASE_URL must be a database URL such as sqlite:///")
    assert "hunter2" not in str(refused.value)


def test_values_given_in_code_are_checked_too() -> None:
    with pytest.raises(SettingsError, match="GATEWAY_LEASE_SECONDS must be an integer >= 1, not 0"):
        Settings(lease_seconds=0)
    with pytest.raises(SettingsError, match="GATEWAY_DATA_DIR must be a path, not 'var'"):
        Settings(data_dir="var")  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match="GATEWAY_LEASE_SECONDS must be an integer"):
        Settings(lease_seconds=True)
    with pytest.raises(SettingsError, match="GATEWAY_ROLE must be one of hub, node, not 'relay'"):
        Extended(role="relay")  # type: ignore[arg-type]
