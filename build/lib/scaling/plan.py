"""Entry point of `python -m scaling.plan`; the work lives in `scaling.study.laws.plan`.

``python -m scaling.plan SWEEP.yaml``: what a study will cost and how sharp its laws will be.
"""

import sys

from scaling.study.laws.plan import main

if __name__ == "__main__":
    sys.exit(main())
