"""`mriaug.engine.runtime`: which precision a run gets on which device."""

from __future__ import annotations

import pytest
import torch

from mriaug.engine import runtime

AMD_WITHOUT = "processor\t: 0\nflags\t\t: fpu vme sse sse2 avx avx2 avx512f avx512bw\nmodel name\t: AMD EPYC\n"
AMD_WITH = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 avx512bw\n"
INTEL_AMX = "flags\t\t: fpu avx512f amx_tile amx_bf16 amx_int8\n"


def test_native_bf16_is_read_from_the_cpu_flags() -> None:
    assert not runtime.cpu_bf16_native(AMD_WITHOUT)
    assert runtime.cpu_bf16_native(AMD_WITH) and runtime.cpu_bf16_native(INTEL_AMX)
    assert not runtime.cpu_bf16_native("model name\t: avx512_bf16 in a name is not a flag\n")
    assert not runtime.cpu_bf16_native("")


@pytest.mark.parametrize("cpuinfo,expected", [(AMD_WITHOUT, False), (AMD_WITH, True), (INTEL_AMX, True)])
def test_bf16_autocast_only_where_the_cpu_has_it(cpuinfo: str, expected: bool) -> None:
    assert runtime.autocast_bf16("bf16", torch.device("cpu"), cpuinfo) is expected
    assert runtime.autocast_bf16("fp32", torch.device("cpu"), cpuinfo) is False


def test_cuda_bf16_from_ampere_on(monkeypatch: pytest.MonkeyPatch) -> None:
    # No GPU here: the capability query is what is mocked (Volta 7.0, Ampere 8.0, Hopper 9.0).
    for capability, expected in (((7, 0), False), ((8, 0), True), ((9, 0), True)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        assert runtime.autocast_bf16("bf16", torch.device("cuda")) is expected



@pytest.mark.parametrize(("cpu_max", "affinity", "expected"), [
    ("max 100000\n", {0, 1, 2, 3}, 4),  # no quota: the cores the process is bound to
    ("200000 100000\n", {0, 1, 2, 3}, 2),  # a quota of 2 cores (a container's --cpus=2) below 4 bound cores
    ("150000 100000", {0, 1, 2, 3}, 2),  # 1.5 cores: a part of a core still needs a thread
    ("800000 100000", {0, 1}, 2),  # the binding below the quota
    ("50000 100000", {0, 1}, 1),  # half a core: still one thread
    ("garbage", {0, 1, 2}, 3),  # unreadable: the binding alone
])
def test_usable_cpus_are_the_binding_capped_by_the_cgroup_quota(cpu_max: str, affinity: set[int],
                                                                expected: int) -> None:
    assert runtime.usable_cpus(cpu_max, affinity) == expected


def test_workers_on_one_machine_split_its_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    assert [runtime.cpu_threads(w, cpus=8) for w in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]
    assert runtime.cpu_threads(0, cpus=2) == 2  # no registered worker yet: the whole share
    threads = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.setattr(runtime, "usable_cpus", lambda: 6)
        assert runtime.use_cpu_threads(2) == 3 == torch.get_num_threads()
        monkeypatch.setenv("OMP_NUM_THREADS", "5")  # the user's (or Slurm's) choice is kept
        torch.set_num_threads(5)
        assert runtime.use_cpu_threads(2) == 5
    finally:
        torch.set_num_threads(threads)
