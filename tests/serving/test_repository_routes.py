"""The model repository routes (load, unload): off unless a token is configured, then only with that
bearer token; and readiness tells the truth after an unload."""

import os

import httpx
import pytest

from flowline.package.format import verify
from flowline.inference_services.local_server import running_server
from flowline.inference_services.options import REPOSITORY_TOKEN_ENV
from serving_helpers import AUTHORIZED, REPOSITORY_TOKEN, repository_env

pytestmark = pytest.mark.xdist_group("serving")  # the packages are built once, in one worker

PREDICT = "/v1/models/churn:predict"
READINESS = ("/v2/health/ready", "/v2/models/churn/ready", "/v1/models/churn")


def test_the_repository_routes_are_off_by_default(server, record):
    with httpx.Client(base_url=server) as client:
        for action in ("load", "unload"):
            refused = client.post(f"/v2/repository/models/churn/{action}", headers=AUTHORIZED)
            assert refused.status_code == 404 and REPOSITORY_TOKEN_ENV in refused.json()["error"], action
        assert all(client.get(path).status_code == 200 for path in READINESS)
        assert client.post(PREDICT, json={"instances": [record]}).status_code == 200


def test_unload_and_load_take_the_token_and_readiness_follows(churn_package, record, tmp_path):
    with running_server([str(churn_package)], log_path=str(tmp_path / "server.log"), env=repository_env()) as url, \
            httpx.Client(base_url=url, timeout=60) as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {REPOSITORY_TOKEN}"},
                        {"Authorization": REPOSITORY_TOKEN}, {"Authorization": f"Bearer {REPOSITORY_TOKEN}x"}):
            for action in ("load", "unload"):
                refused = client.post(f"/v2/repository/models/churn/{action}", headers=headers)
                assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer", (headers, action)
        assert all(client.get(path).status_code == 200 for path in READINESS)  # nothing was unloaded
        assert client.post("/v2/repository/models/fraud/unload", headers=AUTHORIZED).status_code == 404
        assert client.get("/v2").json()["extensions"] == ["model_repository_extension"]  # with a token, offered

        unloaded = client.post("/v2/repository/models/churn/unload", headers=AUTHORIZED)
        assert unloaded.status_code == 200 and unloaded.json() == {"name": "churn", "unload": True}
        assert [client.get(path).status_code for path in READINESS] == [503, 503, 503]
        assert client.post(PREDICT, json={"instances": [record]}).status_code == 503
        assert client.get("/v2/health/live").status_code == 200  # alive, but out of service

        loaded = client.post("/v2/repository/models/churn/load", headers=AUTHORIZED)
        assert loaded.status_code == 200 and loaded.json()["version"] == verify(churn_package)["version"]
        assert all(client.get(path).status_code == 200 for path in READINESS)
        assert client.get("/v2/models/churn/ready").json()["ready"] is True
        assert client.post(PREDICT, json={"instances": [record]}).status_code == 200


def test_a_short_token_stops_the_server_at_start(churn_package, tmp_path):
    with pytest.raises(RuntimeError, match=f"{REPOSITORY_TOKEN_ENV}: 5 characters, give at least 16"):
        with running_server([str(churn_package)], log_path=str(tmp_path / "server.log"),
                            env={**os.environ, REPOSITORY_TOKEN_ENV: "short"}, ready_timeout=60):
            pass


@pytest.mark.parametrize("token", ["aaaaaaaaaaaaaaaa", "abcabcabcabcabcabcabc", "passwordpassword"])
def test_a_token_of_few_different_characters_is_refused(token, monkeypatch):
    """Only the length was checked: 'aaaaaaaaaaaaaaaa' loaded and unloaded models."""
    from flowline.inference_services.options import repository_token

    monkeypatch.setenv(REPOSITORY_TOKEN_ENV, token)
    with pytest.raises(ValueError, match=f"{REPOSITORY_TOKEN_ENV}: {len(set(token))} different characters, give "
                                         "at least 10"):
        repository_token()
    monkeypatch.setenv(REPOSITORY_TOKEN_ENV, "3f9c0e7a1b2d4c6e8a0b1c2d3e4f5a6b")  # `openssl rand -hex 16`
    assert repository_token() == "3f9c0e7a1b2d4c6e8a0b1c2d3e4f5a6b"
