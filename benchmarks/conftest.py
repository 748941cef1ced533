"""Benchmark configuration.

Without a CUDA GPU the Triton kernels run under the Triton interpreter (TRITON_INTERPRET=1), which
must be set before any `@triton.jit` function is created, so it is set here, before benchmark modules
import arvid.kernels. On a GPU machine the kernels run compiled. `arvid bench` sets ARVID_BENCH=1 to
keep the interpreter off (its timings mean nothing; a timed CPU run takes the PyTorch paths) and to
time with one torch thread on the CPU: on a shared 2-core machine two OpenMP threads stall whenever
one of them is descheduled, which made CPU timings swing tenfold.

`--arvid-quick` (passed by `arvid bench --quick`) asks each benchmark file to shrink its sweep; read
it through the `quick` fixture or `config.getoption("arvid_quick")`.
"""

import os

import pytest
import torch

BENCH_ON_CPU = bool(os.environ.get("ARVID_BENCH")) and not torch.cuda.is_available()
if not torch.cuda.is_available() and not os.environ.get("ARVID_BENCH"):
    os.environ.setdefault("TRITON_INTERPRET", "1")

torch.set_num_threads(1 if BENCH_ON_CPU else max(1, min(2, os.cpu_count() or 1)))


def pytest_addoption(parser):
    parser.addoption("--arvid-quick", action="store_true", default=False,
                     help="shrink each benchmark's sweep to finish in about two minutes on a 2-core CPU")


@pytest.fixture(scope="session")
def quick(request) -> bool:
    return bool(request.config.getoption("arvid_quick"))
