"""Object identifiers that elicense puts into certificates.

The arc is a UUID-derived OID (ITU-T X.667, ``2.25.<uuid>``), which needs no registration and
cannot collide with anyone else's. Each certificate role has its own certificate policy OID, so
that a verifier can tell a department seal from a citizen's certificate or a TSA certificate.
"""

from __future__ import annotations

import enum

__all__ = ["ELICENSE_ARC", "CertificateRole", "POLICY_OIDS", "role_for_policy",
           "ORGANIZATION_IDENTIFIER_OID", "SERIAL_NUMBER_OID", "organization_identifier",
           "holder_serial_number"]

ELICENSE_ARC = "2.25.238416395214738291065514208817341660213"

ORGANIZATION_IDENTIFIER_OID = "2.5.4.97"
SERIAL_NUMBER_OID = "2.5.4.5"


class CertificateRole(str, enum.Enum):
    ROOT_CA = "root_ca"
    ISSUING_CA = "issuing_ca"
    DEPARTMENT_SEAL = "department_seal"
    HOLDER = "holder"  # 一证通用 personal or enterprise certificate
    TSA = "tsa"
    OCSP = "ocsp"
    TRUST_LIST = "trust_list"
    QR_SIGNING = "qr_signing"


POLICY_OIDS: dict[CertificateRole, str] = {
    CertificateRole.ROOT_CA: f"{ELICENSE_ARC}.1.1",
    CertificateRole.ISSUING_CA: f"{ELICENSE_ARC}.1.2",
    CertificateRole.DEPARTMENT_SEAL: f"{ELICENSE_ARC}.1.3",
    CertificateRole.HOLDER: f"{ELICENSE_ARC}.1.4",
    CertificateRole.TSA: f"{ELICENSE_ARC}.1.5",
    CertificateRole.OCSP: f"{ELICENSE_ARC}.1.6",
    CertificateRole.TRUST_LIST: f"{ELICENSE_ARC}.1.7",
    CertificateRole.QR_SIGNING: f"{ELICENSE_ARC}.1.8",
}


def role_for_policy(oid: str) -> CertificateRole | None:
    for role, value in POLICY_OIDS.items():
        if value == oid:
            return role
    return None


def organization_identifier(uscc: str) -> str:
    """ETSI EN 319 412-1 semantics identifier for a Chinese legal person: ``NTRCN-<USCC>``."""
    return f"NTRCN-{uscc}"


def holder_serial_number(code_type: str, code: str) -> str:
    """The 一证通用 certificate's subject serialNumber: ``111-<resident ID>`` / ``001-<USCC>``."""
    return f"{code_type}-{code}"
