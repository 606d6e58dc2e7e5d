"""Self-service interconnection tests: a sandbox agency drives a scripted exchange and grades an agency."""

from gateway.certification.engine import Certifications, CheckView, RunView
from gateway.errors import CertificationInProgress

__all__ = ["CertificationInProgress", "Certifications", "CheckView", "RunView"]
