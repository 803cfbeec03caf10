"""The CloudEvents types flowline sends and receives, named once.

KServe's payload logger sends each served request as REQUEST_EVENT to the Knative Broker;
the exit handler of a compiled pipeline sends PIPELINE_RUN_EVENT when a run finishes, with
one of RUN_STATUSES. The drift monitor counts both.
"""

REQUEST_EVENT = "org.kubeflow.serving.inference.request"
PIPELINE_RUN_EVENT = "dev.flowline.pipeline.run.finished"
RUN_STATUSES = ("succeeded", "failed")
