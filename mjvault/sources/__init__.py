"""Where jobs come from: one subpackage per source."""
