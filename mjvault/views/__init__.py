"""Checkout views: directories of links or copies of a vault's images, laid out by templates."""
