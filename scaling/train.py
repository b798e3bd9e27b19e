"""Entry point of `python -m scaling.train`; the work lives in `scaling.training.trainer`.

The training job: one VAR size on a token store, measured the way the paper measures it.
"""

import sys

from scaling.training.trainer import main

if __name__ == "__main__":
    sys.exit(main())
