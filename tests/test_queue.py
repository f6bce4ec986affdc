"""`mriaug.slurm.queue` and `mriaug.slurm.planning.chunks`: what is read from scontrol and squeue, and arrays
cut to the cluster's size. (Until issue 23 in test_slurm.py.)"""

from __future__ import annotations

from mriaug.slurm import planning, queue


def test_parsers() -> None:
    assert queue.parse_max_array_size("MaxArraySize            = 1001\nMaxJobCount = 10000\n") == 1001
    assert queue.parse_max_array_size("nothing here") is None
    text = "12_3|RUNNING\n12_[4-6,9%2]|PENDING\n15|PENDING\ngarbage\n"
    assert queue.parse_squeue(text) == {"12_3": "RUNNING", "12_4": "PENDING", "12_5": "PENDING",
                                        "12_6": "PENDING", "12_9": "PENDING", "15": "PENDING"}
    assert [len(c) for c in planning.chunks(list(range(7)), 3)] == [3, 3, 1]
    assert [len(c) for c in planning.chunks(list(range(7)), None)] == [7]
