"""The drift component."""
