"""A VQVAE that reconstructs worse than each image's mean colour is flagged, with what to do."""

from __future__ import annotations

from scaling.data.vqvae_training import reconstruction_warning


def test_below_the_mean_colour_baseline_warns():
    # the numbers of a VQVAE stopped too early on a user's own images (12.5 dB vs 15.4 dB)
    text = reconstruction_warning({"step": 200, "val_psnr": 12.5, "val_psnr_mean_colour": 15.4})
    assert text is not None
    assert "12.5 dB is below the mean-colour baseline 15.4 dB (step 200)" in text
    assert "prepare.vqvae.steps" in text


def test_above_the_baseline_or_no_evaluation_is_quiet():
    assert reconstruction_warning({"val_psnr": 21.7, "val_psnr_mean_colour": 15.4}) is None
    assert reconstruction_warning(None) is None
    assert reconstruction_warning({"val_psnr": 3.0}) is None  # an old line without the baseline
