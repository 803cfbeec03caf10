"""The tasks of the template's pipeline as KFP's compiler and kfp.local name them: a component used
five times is tune, tune-2, ..., tune-5. A transaction-log use case adds customer-rows after ingest.
SHOWN: as a run's progress, summary and errors name them, by display name (tune-2 is tune-linear)."""

STEPS = ["ingest", "split", "features", "tune", "tune-2", "tune-3", "tune-4", "tune-5",
         "nas", "train", "evaluate", "bias", "explain",
         "drift", "package", "deploy"]
SHOWN = [{"tune": "tune-xgboost", "tune-2": "tune-linear", "tune-3": "tune-forest", "tune-4": "tune-lightgbm",
          "tune-5": "tune-catboost"}.get(step, step) for step in STEPS]
