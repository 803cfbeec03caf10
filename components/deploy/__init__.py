"""The deploy component: InferenceServices, canary promotion and rollback."""
