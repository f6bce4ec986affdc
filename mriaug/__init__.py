"""mriaug: the synthetic-augmentation MRI dementia study as reproducible batch jobs."""

__version__ = "0.1.0"
