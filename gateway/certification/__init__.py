"""Self-service interconnection tests: a sandbox agency drives a scripted exchange and grades an agency."""

from gateway.certification.engine import CertificationInProgress, Certifications, CheckView, RunView

__all__ = ["CertificationInProgress", "Certifications", "CheckView", "RunView"]
