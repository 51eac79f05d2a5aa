"""spamcam export."""
