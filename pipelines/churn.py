"""The churn pipeline: the template applied to pipelines/use_cases/churn.yaml."""

from flowline.pipelines.template import build_pipeline
from flowline.use_case_loader import load_use_case

churn_pipeline = build_pipeline(load_use_case("churn"))
