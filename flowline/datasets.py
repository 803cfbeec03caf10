"""The data home: where flowline finds the datasets it knows, verified by sha256.

Datasets are never bundled or downloaded silently. Each registered dataset names its
file, its sha256 and where to get it; `dataset_path` returns the file only when its
checksum matches, and otherwise says exactly what is wrong and how to fix it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

DATA_HOME_ENV = "FLOWLINE_DATA_HOME"


class DatasetError(RuntimeError):
    """A registered dataset is unknown, missing, or does not match its checksum."""


@dataclass(frozen=True)
class RegisteredDataset:
    name: str
    filename: str
    sha256: str
    source: str


REGISTRY: dict[str, RegisteredDataset] = {
    d.name: d
    for d in [
        RegisteredDataset(
            name="telco_customer_churn",
            filename="telco_customer_churn.csv",
            sha256="16320c9c1ec72448db59aa0a26a0b95401046bef5d02fd3aeb906448e3055e91",
            source="https://raw.githubusercontent.com/IBM/telco-customer-churn-on-icp4d/"
            "master/data/Telco-Customer-Churn.csv",
        ),
        RegisteredDataset(
            name="creditcard_fraud_sample",
            filename="creditcard_fraud_sample.csv",
            sha256="5abc32c9adbe26ac399cd81182e08af1766969aa0f0dd15b7ffdb0e8a1b7d665",
            source="https://raw.githubusercontent.com/VeryFatBoy/gpt-workshop/"
            "f56676401c3d0fbd447db89acb60520347721e7f/data/creditcard.csv",
        ),
        RegisteredDataset(
            name="vehicle_insurance_fraud",
            filename="vehicle_insurance_fraud.csv",
            sha256="8bb5870f82bb78cceb2bee7747c68c2a8d617af4e22b2de55fbb40c214883255",
            source="https://raw.githubusercontent.com/TeamAlphaTingyu/MachineLearningHW1/"
            "323846591cb6cc830c3e54b66e56b684ca68fc84/fraud_oracle.csv",
        ),
        RegisteredDataset(
            name="cdnow_master",
            filename="cdnow_master.txt",
            sha256="eff6889ed364c5199d6eacbbeb7a6d559971df4406ac876f322c373f00a072ef",
            source="the file lifetimes/datasets/CDNOW_master.txt inside the wheel of "
            "`pip download --no-deps lifetimes==0.11.3`",
        ),
        RegisteredDataset(
            name="cdnow_sample",
            filename="cdnow_sample.txt",
            sha256="6fae10155c0b0ba363c2c386e30f77990d22328220efd862a5edd1443420d94a",
            source="the file lifetimes/datasets/CDNOW_sample.txt inside the wheel of "
            "`pip download --no-deps lifetimes==0.11.3`",
        ),
        # Public benchmark sets with no shipped use case: model comparisons (`make bench-models`) and your own
        # use cases. Provenance and checks: ../shared/data/provenance/benchmark-datasets.md.
        RegisteredDataset(
            name="adult", filename="adult.csv",
            sha256="f2c62076f19504d99a38b22badf445a7f42530ade6b827acf78dd143fbce38bb",
            source="UCI Adult (census income), adult.data with a header row added",
        ),
        RegisteredDataset(
            name="bank_marketing", filename="bank_marketing.csv",
            sha256="74adfc578bf77a7ff4bb1ba4a9f8709d9e3c6907342959c2c8416847e0afb4d8",
            source="UCI Bank Marketing, bank-additional-full.csv (Moro et al. 2014)",
        ),
        RegisteredDataset(
            name="german_credit", filename="german_credit.csv",
            sha256="302c25f9a04f3253156506baa40b172b3107bf7e26b9bbc46e51c2a062829787",
            source="UCI Statlog German credit, german.data as CSV with a header row",
        ),
        RegisteredDataset(
            name="spambase", filename="spambase.csv",
            sha256="43cbe9a4be4f1261587a0d094f331fbfb2f20c1284d733d3a612a3692a19ab4b",
            source="UCI Spambase, spambase.data as CSV with a header row",
        ),
        RegisteredDataset(
            name="online_shoppers", filename="online_shoppers.csv",
            sha256="44b29f6ac84d6491bcf8d78e3cd544c10df910fe518293454174876f25956c4f",
            source="UCI Online Shoppers Purchasing Intention (Sakar et al. 2018)",
        ),
        RegisteredDataset(
            name="hr_attrition_ibm", filename="hr_attrition_ibm.csv",
            sha256="a5c31e38bd7fafc9bc333884eb181b06b41b8e5e488e8f7ccb27199fb3be7659",
            source="IBM HR Analytics Employee Attrition (fictional data made by IBM)",
        ),
    ]
}


def cache_home() -> Path:
    """flowline's folder among the user's caches: $XDG_CACHE_HOME/flowline, else ~/.cache/flowline. The image
    sets XDG_CACHE_HOME=/tmp/cache: its pods' root filesystem, home included, is read-only."""
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "flowline"


def data_home() -> Path:
    """The folder holding the datasets: $FLOWLINE_DATA_HOME, else `cache_home()`/data."""
    return Path(os.environ.get(DATA_HOME_ENV) or cache_home() / "data").expanduser()


def sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dataset_path(name: str) -> Path:
    """Return the verified path of a registered dataset, or raise DatasetError saying why."""
    if name not in REGISTRY:
        raise DatasetError(f"unknown dataset {name!r}; registered datasets: {', '.join(sorted(REGISTRY))}")
    entry = REGISTRY[name]
    path = data_home() / entry.filename
    how_to_fix = (
        f"Get it from {entry.source}, save it as {path} "
        f"(or set {DATA_HOME_ENV} to a folder that holds {entry.filename})."
    )
    if not path.is_file():
        raise DatasetError(
            f"dataset {name!r}: file {path} is missing (expected sha256 {entry.sha256}). {how_to_fix}"
        )
    actual = sha256_of_file(path)
    if actual != entry.sha256:
        raise DatasetError(
            f"dataset {name!r}: file {path} has sha256 {actual}, expected {entry.sha256}; "
            f"the file is altered or a different version. {how_to_fix}"
        )
    return path
