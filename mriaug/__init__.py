"""mriaug: the synthetic-augmentation MRI dementia study as reproducible batch jobs."""

from . import compat

__version__ = "0.1.0"

compat.install()  # jobs pickled before the subpackages still find their classes (mriaug/compat.py)
