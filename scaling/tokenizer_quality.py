"""Entry point of `python -m scaling.tokenizer_quality`; the work lives in
`scaling.training.tokenizer_quality`.

``python -m scaling.tokenizer_quality VQVAE IMAGES_ROOT``: a VQVAE's quality as a tokenizer.
"""

import sys

from scaling.training.tokenizer_quality import main

if __name__ == "__main__":
    sys.exit(main())
