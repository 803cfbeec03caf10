"""The tasks of the template's pipeline as KFP's compiler and kfp.local name them: a component used
three times is tune, tune-2 and tune-3. A transaction-log use case adds customer-rows after ingest."""

STEPS = ["ingest", "split", "features", "tune", "tune-2", "tune-3", "nas", "train", "evaluate", "bias", "explain",
         "drift", "package", "deploy"]
