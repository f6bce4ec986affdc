"""What to run: grid files, hyper-parameters, scenarios, augmentation names, one run's spec and its id.
Nothing here imports torch or the engine."""
