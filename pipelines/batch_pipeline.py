"""The batch-scoring pipeline: one step (components/score) that scores a table, or a transaction log's
customers, with a model package, and records the run in the audit log.

Inputs: `package_uri` (the package: s3://bucket/prefix on a cluster), `input_uri` (CSV or Parquet: s3://,
http(s) or a path), `as_of` (a transaction-log use case: the date its customers are scored at, "" for the
run's own day) and `audit_log`. Outputs: the scores and the quarantine (Parquet), and the run's counts as
KFP Metrics and a Markdown summary. `flowline compile USE_CASE --batch` writes it, and
`flowline submit USE_CASE --batch --schedule CRON` runs it on a schedule; the same pipeline runs through
kfp.local.
"""

from typing import Callable, NamedTuple

from kfp import dsl
from kfp.dsl import Dataset

from flowline import DEFAULT_IMAGE, default_image
from flowline.components import flowline_component
from flowline.components.score.component import score
from flowline.pipelines.template import configure_task
from flowline.use_case import UseCase

BatchOutputs = NamedTuple("BatchOutputs", [("scores", Dataset), ("quarantine", Dataset)])

BATCH_INPUTS = """The use case's batch scoring.

Args:
    package_uri: the model package to score with (s3://bucket/prefix, as `flowline upload` puts it).
    input_uri: the rows to score, CSV or Parquet (s3://, http(s):// or a path).
    as_of: a transaction log's scoring date, YYYY-MM-DD; empty: the run's own day. Other use cases ignore it.
    audit_log: where the run is recorded (s3://bucket/prefix); empty: nowhere.
"""


def build_batch_pipeline(use_case: UseCase, secrets: bool = False, image: str = DEFAULT_IMAGE) -> Callable:
    """The batch-scoring pipeline of `use_case` (baked in as JSON), its step in `image`; with `secrets` (a
    cluster run) the step gets the object store's Secret and the signing and audit keys."""
    step = flowline_component(score, image)
    spec = use_case.model_dump_json()

    def pipeline(package_uri: str, input_uri: str, as_of: str = "", audit_log: str = "") -> BatchOutputs:
        task = configure_task(step(use_case_json=spec, package_uri=package_uri, input_uri=input_uri, as_of=as_of,
                                   audit_log=audit_log), "score", caching=False, secrets=secrets)
        return BatchOutputs(scores=task.outputs["scores"], quarantine=task.outputs["quarantine"])

    pipeline.__doc__ = BATCH_INPUTS  # the run form's text for each input
    return dsl.pipeline(name=f"flowline-{use_case.name}-batch",
                        description=f"Batch scoring: {use_case.description or use_case.name}")(pipeline)


def compile_batch_pipeline(use_case: UseCase, output_path: str, image: str | None = None) -> None:
    """Write the batch-scoring pipeline as KFP IR YAML for a cluster (object store Secret and keys included), its
    steps in `image` (default: flowline.default_image())."""
    from kfp import compiler

    compiler.Compiler().compile(build_batch_pipeline(use_case, secrets=True, image=image or default_image()),
                                package_path=output_path)
