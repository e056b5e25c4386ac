"""The service skeleton over HTTP: health, the public directory, admin maintenance, problems."""

import copy

import pytest

from directory.catalog import load_demo_catalog

PROBLEM = "application/problem+json"


def test_health_ready_metrics_docs(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["status"] == "ready"
    assert "elicense_http_requests_total" in client.get("/metrics").text
    assert client.get("/openapi.json").json()["info"]["title"] == "elicense"
    assert "swagger" in client.get("/docs").text.lower()


def test_public_directory_lists_demo_catalog(client) -> None:  # type: ignore[no-untyped-def]
    body = client.get("/v1/license-types").json()
    names = {t["name"] for t in body["data"]}
    assert body["count"] == len(body["data"]) >= 8
    assert {"营业执照", "居住证", "出生医学证明"} <= names
    one = client.get(f"/v1/license-types/{body['data'][0]['code']}").json()
    assert {"code", "name", "defining_body", "issuer_codes", "holder_kind", "validity_years",
            "sharing_level", "service_items", "fields"} <= set(one)
    assert client.get("/v1/issuers").json()["count"] >= 5


def test_unknown_type_is_a_404_problem(client) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/v1/license-types/11100000000013338W999")
    assert r.status_code == 404 and r.headers["content-type"].startswith(PROBLEM)
    assert r.json()["code"] == "unknown_license_type"


def _type(code_suffix: str) -> dict:  # type: ignore[type-arg]
    raw = copy.deepcopy(load_demo_catalog().license_types[0].to_dict())
    raw["code"] = raw["code"][:18] + code_suffix
    raw["name"] = "测试证照" + code_suffix
    return raw


def test_admin_maintains_directory(client, admin_key, key_factory) -> None:  # type: ignore[no-untyped-def]
    body = _type("901")
    assert client.post("/v1/license-types", json=body).status_code == 401
    verifier = key_factory("verifier")
    r = client.post("/v1/license-types", json=body,
                    headers={"Authorization": f"Bearer {verifier}"})
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    auth = {"Authorization": f"Bearer {admin_key}"}
    r = client.post("/v1/license-types", json=body, headers=auth)
    assert r.status_code == 201, r.text
    assert client.get(f"/v1/license-types/{body['code']}").json()["name"] == body["name"]
    body["name"] = "测试证照改"
    r = client.put(f"/v1/license-types/{body['code']}", json=body, headers=auth)
    assert r.status_code == 200 and r.json()["name"] == "测试证照改"


@pytest.mark.parametrize("mutate, code, field", [
    (lambda b: b.update(code=b["code"][:17] + "X901"), "invalid_catalog", "code"),
    (lambda b: b.update(issuer_codes=["11440300MB2C928150"]), "invalid_catalog",
     "issuer_codes"),
    (lambda b: b["fields"].append({"key": "x", "label": "x", "type": "enum"}), "invalid_catalog",
     "fields"),
    (lambda b: b.update(sharing_level="maybe"), "validation_error", "sharing_level"),
])
def test_bad_types_are_refused_and_nothing_written(client, admin_key, mutate, code, field) -> None:  # type: ignore[no-untyped-def]
    body = _type("902")
    mutate(body)
    before = client.get("/v1/license-types").json()["count"]
    r = client.post("/v1/license-types", json=body,
                    headers={"Authorization": f"Bearer {admin_key}"})
    assert r.status_code == 422 and r.headers["content-type"].startswith(PROBLEM)
    assert r.json()["code"] == code and r.json()["field"] == field
    assert client.get("/v1/license-types").json()["count"] == before


def test_bad_api_key_is_401(client) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/v1/issuers", json={}, headers={"Authorization": "Bearer elk_nope"})
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
