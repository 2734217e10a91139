"""Training: recipes (optimiser, schedule, data pipeline), resumable sampling, checkpoints,
distributed data parallelism and the training loop itself (`loop.train_run`)."""
