"""Department seal keys in a PKCS#11 token (SoftHSM2): generated inside, used for real seals."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from directory.models import KeyMaterial
from license_core.policy import judge_document
from signing.pdf_facts import PdfVerificationSpec, gather_document_facts
from tests.unit.signing.sealing_fixtures import shared_softhsm_token
from verify_api.container import build_container
from verify_api.deps import Principal
from verify_api.platform.pki import platform_pki
from verify_api.services.installation import ensure_installed
from verify_api.services.keys import rotate_seal
from verify_api.services.licenses import MintRequest, license_service
from verify_api.settings import Settings
from verify_api.wiring import wire

ISSUER = "11440300MB2C928159"


def test_seal_with_a_key_generated_in_the_token(db_url_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    token = shared_softhsm_token()
    settings = Settings(home=tmp_path / "home", database_url=db_url_factory(),
                        environment="test", secret_key="hsm-secret-" + "h" * 32,
                        pkcs11_module=token.module_path, pkcs11_token_label=token.label,
                        pkcs11_pin=token.user_pin, softhsm2_conf=str(token.conf_path))
    container = wire(build_container(settings))
    try:
        ensure_installed(container)
        rotated = rotate_seal(container, issuer_code=ISSUER, actor="test")
        with container.session() as session:
            row = session.scalars(select(KeyMaterial).where(
                KeyMaterial.label == rotated["label"])).one()
            assert row.key_enc is None and row.pkcs11_ref == rotated["label"]
        from pkcs11 import Attribute, ObjectClass
        with token.session(rw=False) as sess:
            key = sess.get_key(object_class=ObjectClass.PRIVATE_KEY, label=rotated["label"])
            assert key[Attribute.SENSITIVE] and not key[Attribute.EXTRACTABLE]

        from license_core.holder_codes import uscc_check_character
        holder = "91440300MA5H00001"
        body = {"type_code": "11100000MB03271699001",
                "holder": {"id": holder + uscc_check_character(holder), "name": "深圳市某公司"},
                "data": {"name": "深圳市某公司", "entity_type": "有限责任公司",
                         "legal_representative": "李四", "registered_capital": "10万元人民币",
                         "established_on": "2021-01-01", "address": "深圳市龙岗区",
                         "business_scope": "贸易"}}
        service = license_service(container)
        lic = service.mint(MintRequest.from_body(body), issuer_code=ISSUER, actor="test").license
        pdf = service.pdf(lic["id"], principal=Principal("client", "admin", "t"))
        now = container.clock.now()
        facts = gather_document_facts(pdf, PdfVerificationSpec(
            trust_roots=(platform_pki(container).root,), at=now))
        report = judge_document(facts, verified_at=now, expected_issuer=ISSUER)
        assert report.indication.value == "TOTAL_PASSED", report.to_dict()
        seal = facts.signatures[0]
        assert seal.signer_issuer_code == ISSUER and seal.pades_level == "B-LTA"
    finally:
        container.dispose()
