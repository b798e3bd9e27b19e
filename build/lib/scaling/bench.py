"""Entry point of `python -m scaling.bench`; the work lives in `scaling.tools.bench`.

Throughput, memory and correctness benchmark of the project's VAR trainer on one device.
"""

import sys

from scaling.tools.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
