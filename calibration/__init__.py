"""spamcam calibration."""
