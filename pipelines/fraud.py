"""The fraud pipelines: the template applied to pipelines/use_cases/fraud.yaml (card transactions)
and fraud-claims.yaml (car-insurance claims)."""

from flowline.pipelines.template import build_pipeline
from flowline.use_case_loader import load_use_case

fraud_pipeline = build_pipeline(load_use_case("fraud"))
fraud_claims_pipeline = build_pipeline(load_use_case("fraud-claims"))
