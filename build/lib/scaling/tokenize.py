"""Entry point of `python -m scaling.tokenize`; the work lives in `scaling.data.tokenize`.

Images -> token store: encode every image of each split with a multi-scale VQVAE.
"""

import sys

from scaling.data.tokenize import main

if __name__ == "__main__":
    sys.exit(main())
