"""The command-line face of mjvault: one module per command group, no logic of its own."""
