from mjvault.cli.main import main

main()
