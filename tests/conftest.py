"""Test configuration.

Without a CUDA GPU the Triton kernels run under the Triton interpreter (TRITON_INTERPRET=1), which
must be set before any `@triton.jit` function is created, so it is set here, before test modules
import arvid.kernels. On a GPU machine the kernels run compiled.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

torch.set_num_threads(int(os.environ.get("ARVID_TEST_THREADS", max(1, min(2, os.cpu_count() or 1)))))
