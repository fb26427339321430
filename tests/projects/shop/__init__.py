"""A small app for the bridge tests: one model, registered in the admin."""
