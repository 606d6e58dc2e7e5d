"""The WSDL Spyne describes for the service, made deterministic and acceptable to every stub generator."""

from __future__ import annotations

import inspect

from lxml import etree
from spyne import Application
from spyne.interface.wsdl import Wsdl11

WSDL_LOCATION = "http://localhost:8080/soap"
"""The address written into the published WSDL (wsdl/); served copies carry the gateway's own."""

_WSDL = "http://schemas.xmlsoap.org/wsdl/"
_XS = "http://www.w3.org/2001/XMLSchema"
_WSDL_ORDER = [f"{{{_WSDL}}}{name}" for name in ("types", "message", "portType", "binding", "service")]
_DOC_INDENT = " " * 8
"""Continuation lines of an operation's documentation as published: indented like a method's docstring."""


def render_wsdl(application: Application, location: str = WSDL_LOCATION) -> bytes:
    """The WSDL for ``application`` with ``location`` as the endpoint address, pretty-printed.

    ``parameterOrder`` is dropped: Spyne fills it with the wrapper element's name, which is not
    a part name once parts are called ``parameters``, and Axis 1's WSDL2Java then refuses it.
    """
    wsdl = Wsdl11(application.interface)
    wsdl.build_interface_document(location)
    tree = etree.fromstring(wsdl.get_interface_document())
    for operation in tree.iterfind(f"{{{_WSDL}}}portType/{{{_WSDL}}}operation"):
        operation.attrib.pop("parameterOrder", None)
    for documentation in tree.iter(f"{{{_WSDL}}}documentation"):
        documentation.text = _published_doc(documentation.text or "")
    _sort_children(tree.find(f"{{{_WSDL}}}types/{{{_XS}}}schema"))
    _sort_children(tree)
    return etree.tostring(tree, pretty_print=True, xml_declaration=True, encoding="UTF-8")


def _published_doc(docstring: str) -> str:
    """An operation's docstring as the WSDL publishes it, whatever Python compiled it.

    Spyne copies ``__doc__`` verbatim; Python 3.13 strips docstring indentation at compile time and
    earlier versions keep it, so the text is normalised to one form: the published one, with
    continuation lines indented by eight spaces.
    """
    first, *rest = inspect.cleandoc(docstring).split("\n")
    return "\n".join([first, *(f"{_DOC_INDENT}{line}" if line else line for line in rest)])


def _sort_children(parent: etree._Element | None) -> None:
    """Put definitions in a fixed order: Spyne emits them in hash order, which differs per process."""
    if parent is None:
        return

    def key(child: etree._Element) -> tuple[int, str, str]:
        rank = _WSDL_ORDER.index(child.tag) if child.tag in _WSDL_ORDER else len(_WSDL_ORDER)
        return rank, str(child.tag), child.get("name", "")

    parent[:] = sorted(parent, key=key)
