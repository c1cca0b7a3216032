"""The tests' independent measurement of one steady-state step: the product's own
(``memadvise.collect.independent``), which uses only PyTorch's instruments (the profiler
memory timeline on CPU, the caching allocator on CUDA) and none of memadvise's recorder.

    python tests/oracle.py [--warmup N] SCRIPT [ARGS...]

is ``python -m memadvise.collect.independent``; see that module for the JSON it prints.
"""

from __future__ import annotations

import sys

from memadvise.collect.independent import (  # noqa: F401  (the tests' names for it)
    _peak,
    _raw_timeline,
    _run_one,
    main,
    measure_distributed,
    measure_script,
    measure_scripts,
)

if __name__ == "__main__":
    sys.exit(main())
