"""The only code that imports Spyne: wire types, the service with its operations, Spyne's
Application/Soap11/WSGI subclasses and WSDL rendering.

The rest of the gateway uses what is exported here (and, outside :mod:`gateway.soap`, only
``gateway.soap.OPERATIONS``), so replacing Spyne means replacing this subpackage alone.
"""

from __future__ import annotations

from gateway.soap.binding import compat  # first: lets Spyne import on Python 3.12+
from gateway.soap.binding.answer import Answer
from gateway.soap.binding.application import (
    OPERATIONS,
    SpyneBinding,
    build_spyne_application,
    published_wsdl,
)
from gateway.soap.binding.relay import RELAY_OPERATIONS, published_relay_wsdl
from gateway.soap.binding.wsdl import WSDL_LOCATION, render_wsdl

__all__ = [
    "OPERATIONS",
    "RELAY_OPERATIONS",
    "WSDL_LOCATION",
    "Answer",
    "SpyneBinding",
    "build_spyne_application",
    "compat",
    "published_relay_wsdl",
    "published_wsdl",
    "render_wsdl",
]
