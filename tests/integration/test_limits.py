"""Public endpoints are rate limited per client with 429 + Retry-After (problem+json)."""

from fastapi.testclient import TestClient

from verify_api.app import create_app


def test_public_rate_limit(fresh_container) -> None:  # type: ignore[no-untyped-def]
    container = fresh_container()
    container.settings.public_rate_limit_per_minute = 3
    client = TestClient(create_app(container=container, install=False))
    codes = [client.get("/pki/ca/root.crt").status_code for _ in range(4)]
    assert codes[:3] == [200, 200, 200] and codes[3] == 429
    limited = client.get("/pki/ca/root.crt")
    assert limited.headers["retry-after"].isdigit() and int(limited.headers["retry-after"]) >= 1
    assert limited.json()["code"] == "rate_limited"
    # the directory and health endpoints are not limited
    assert client.get("/healthz").status_code == 200
