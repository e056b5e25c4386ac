"""A development PKI built at run time (never private keys in git)."""

from .pki import DepartmentSpec, DevEntity, DevPKI, DevRevocation, seal_label

__all__ = ["DepartmentSpec", "DevEntity", "DevPKI", "DevRevocation", "seal_label"]
