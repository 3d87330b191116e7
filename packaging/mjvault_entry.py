"""The standalone executable's script: what the installed ``mjvault`` command runs."""

from mjvault.cli.main import main

if __name__ == "__main__":
    main()
