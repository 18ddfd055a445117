"""A verified client certificate as a caller. Pure: no I/O.

grpc fills ``x509_*`` entries of ``context.auth_context()`` only for a peer certificate it has
verified, which it asks for only when the server's credentials name a client CA and require
client authentication (checked in tests/auth/test_mtls_e2e.py). So the entries' presence is the
proof; without a client CA no certificate ever stands for anyone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from mediagen.auth.keys import TENANT
from mediagen.auth.principal import Principal, Role
from mediagen.errors import Unauthenticated

AuthContext = Mapping[str, Iterable[bytes]]


class UnusableCertificate(Unauthenticated):
    reason = "CERTIFICATE_SUBJECT_INVALID"


@dataclass(frozen=True)
class CertificatePolicy:
    """Which certificate subjects are admins (CN, any subjectAltName, or the whole subject)."""

    admin_subjects: frozenset[str] = frozenset()

    @classmethod
    def of(cls, admin_subjects: Iterable[str]) -> CertificatePolicy:
        return cls(frozenset(s.strip() for s in admin_subjects if s.strip()))


def _texts(auth_context: AuthContext, key: str) -> list[str]:
    return [value.decode("utf-8", "replace") for value in auth_context.get(key, ())]


def principal_from_certificate(
    auth_context: AuthContext, policy: CertificatePolicy
) -> Principal | None:
    """The caller a verified client certificate names, or None when there is none.

    tenant = the certificate's common name (its first subjectAltName when it has no CN); role
    admin when any of its names is in ``policy.admin_subjects``, else tenant.
    """
    if list(auth_context.get("transport_security_type", ())) != [b"ssl"]:
        return None
    common_names = _texts(auth_context, "x509_common_name")
    alt_names = _texts(auth_context, "x509_subject_alternative_name")
    names = common_names or alt_names
    if not names:
        return None
    tenant = names[0]
    if not TENANT.fullmatch(tenant):
        raise UnusableCertificate(
            "the client certificate's common name is not a valid tenant name "
            "(letters, digits, '.', '_', '@', '-'; at most 100)"
        )
    subjects = {*common_names, *alt_names, *_texts(auth_context, "x509_subject")}
    role = Role.ADMIN if subjects & policy.admin_subjects else Role.TENANT
    return Principal(tenant=tenant, role=role, via="mtls")
