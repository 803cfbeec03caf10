"""Fixtures: model packages built in-process, and one live server over them.

Every serving test module is in the xdist group "serving", so one worker builds each
package once per session.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from flowline.inference_services.local_server import (
    LOOPBACK,
    SERVE_COMMAND,
    free_port,
    running_process,
    running_server,
)
from flowline.use_case import UseCase
from flowline.use_case_loader import load_use_case
from serving_helpers import MAX_BATCH, MAX_EXPLAIN_ROWS, build_package, card_use_case, records_of, repository_env


@pytest.fixture(scope="session")
def churn_package(data_home, churn, tmp_path_factory) -> Path:
    return build_package(churn, tmp_path_factory.mktemp("churn-a"), trials=3)


@pytest.fixture(scope="session")
def churn_package_b(data_home, churn, churn_package, tmp_path_factory) -> Path:
    """A second version of churn: another tuning budget, so another model and version, with the
    first as its champion."""
    return build_package(churn, tmp_path_factory.mktemp("churn-b"), trials=1, champion=str(churn_package))


@pytest.fixture(scope="session")
def card_package(data_home, tmp_path_factory) -> Path:
    return build_package(card_use_case(data_home), tmp_path_factory.mktemp("card"), trials=1)


@pytest.fixture(scope="session")
def clv_package(data_home, tmp_path_factory) -> Path:
    """CLV on all of CDNOW (customer rows from the transaction log), xgboost and linear only, one trial each."""
    use_case = load_use_case("clv")
    quick = use_case.tuning.model_copy(update={"families": {"xgboost": 1, "linear": 1}, "max_boost_rounds": 200})
    return build_package(use_case.model_copy(update={"tuning": quick}), tmp_path_factory.mktemp("clv"), trials=1)


@pytest.fixture(scope="session")
def server(churn_package, card_package, clv_package, tmp_path_factory) -> str:
    """A server of churn, card-fraud and clv as it runs in production: two worker processes on one port,
    batching on (its default), with small batch and explain limits to test them."""
    log = str(tmp_path_factory.mktemp("server") / "server.log")
    with running_server([str(churn_package), str(card_package), str(clv_package)],
                        extra_args=["--max-batch", str(MAX_BATCH), "--max-explain-rows", str(MAX_EXPLAIN_ROWS)],
                        log_path=log, workers=2) as url:
        yield url


@pytest.fixture(scope="module")
def monitor(churn_package, tmp_path_factory) -> str:
    """A drift monitor of churn for each module (its window and counters are the module's), its repository
    routes enabled (tests reload it to empty its window)."""
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    command = [*SERVE_COMMAND, "--drift-monitor", str(churn_package),
               "--host", LOOPBACK, "--port", str(port)]
    log = tmp_path_factory.mktemp("monitor") / "monitor.log"
    with running_process(command, f"{url}/v2/health/ready", str(log), env=repository_env()):
        yield url


@pytest.fixture(scope="session")
def churn_test_rows(churn_package) -> pd.DataFrame:
    """Typed test rows of churn, without the label: what an application would send."""
    frame = pd.read_parquet(churn_package.parent / "test").head(40)
    use_case = UseCase.model_validate_json((churn_package / "use_case.json").read_text())
    return frame[use_case.feature_columns]


@pytest.fixture(scope="session")
def record(churn_test_rows) -> dict:
    """One valid churn record, as JSON carries it."""
    return records_of(churn_test_rows.dropna().head(1))[0]
