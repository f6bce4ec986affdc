"""How a run trains: the loop (`train`), networks and models, augmentation and batches on the device,
checkpoints, seed packs, the speed settings, the run's runtime and its metrics."""
