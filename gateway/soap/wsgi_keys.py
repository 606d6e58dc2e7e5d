"""WSGI environ keys the SOAP endpoint fills for what runs around it (metrics, access log).

They replace reading request bodies and fault envelopes again: the endpoint is the one place
that knows the operation, the fault it answered and who the caller is.
"""

from __future__ import annotations

OPERATION = "gateway.operation"
"""The SOAP operation name, set as soon as it is known (from SOAPAction, then from the body)."""
FAULT_CODE = "gateway.fault_code"
"""The gateway fault code (e.g. ``Client.NotFound``) when the answer is a fault; absent otherwise."""
FAULT_MESSAGE = "gateway.fault_message"
"""The fault's message (for the agency's certification evidence; never logged by the access log)."""
AGENCY = "gateway.agency"
"""The authenticated agency code, once the caller is authenticated."""
PEER = "gateway.peer"
"""The authenticated peer instance id (relay endpoint only)."""
