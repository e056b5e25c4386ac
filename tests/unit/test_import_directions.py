"""SPEC §1: each package imports only what it may; nothing below verify_api imports it."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = {"license_core", "directory", "signing", "converters", "verify_api", "keys_dev"}
ALLOWED = {
    "license_core": {"license_core"},
    "directory": {"directory", "license_core"},
    "signing": {"signing", "license_core"},
    "converters": {"converters", "license_core", "signing"},
    "keys_dev": {"keys_dev", "license_core"},
    "verify_api": OURS,
}
# license_core is pure: only these third-party roots.
CORE_THIRD_PARTY = {"cryptography", "cbor2", "stdnum"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_allowed_packages(package: str) -> None:
    import sys
    stdlib = set(sys.stdlib_module_names)
    wrong = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for root in _imports(path):
            if root in OURS and root not in ALLOWED[package]:
                wrong.append(f"{path.relative_to(ROOT)} imports {root}")
            if package == "license_core" and root not in OURS and root not in stdlib \
                    and root not in CORE_THIRD_PARTY and root != "__future__":
                wrong.append(f"{path.relative_to(ROOT)} imports third-party {root}")
    assert not wrong, "\n".join(wrong)
