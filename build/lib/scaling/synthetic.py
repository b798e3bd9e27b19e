"""Entry point of `python -m scaling.synthetic`; the work lives in `scaling.data.synthetic`.

A synthetic class-conditional image set, written as an ImageNet-style image folder.
"""

import sys

from scaling.data.synthetic import main

if __name__ == "__main__":
    sys.exit(main())
