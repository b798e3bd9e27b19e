"""Entry point of `python -m scaling.train`; the work lives in `scaling.training.job`.

The training job: one VAR size on a token store, measured the way the paper measures it.
"""

import sys

from scaling.training.job import main

if __name__ == "__main__":
    sys.exit(main())
