"""Images -> tokens: image folders, the synthetic set, the VQVAE stage, tokenisation and the
token store. Imports scaling.core only (never training or study).
"""
