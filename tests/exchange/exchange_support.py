"""Constants and small types shared by the exchange tests (imported by their conftest and modules)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.exchange.results import Caller

SENDER, RECIPIENT, THIRD, STRANGER = "000.00.00.G22", "000.00.00.H41", "000.00.00.H14", "000.00.00.H30"
T0 = datetime(2026, 11, 20, 1, 30, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@dataclass(frozen=True)
class Callers:
    """The authenticated agencies of the fixture directory."""

    sender: Caller
    recipient: Caller
    third: Caller
    stranger: Caller
