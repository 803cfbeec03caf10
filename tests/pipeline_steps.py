"""The tasks of the template's pipeline as KFP's compiler and kfp.local name them: a component used
five times is tune, tune-2, ..., tune-5. A transaction-log use case adds customer-rows after ingest."""

STEPS = ["ingest", "split", "features", "tune", "tune-2", "tune-3", "tune-4", "tune-5",
         "nas", "train", "evaluate", "bias", "explain",
         "drift", "package", "deploy"]
