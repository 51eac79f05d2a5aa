"""spamcam edge_app."""
