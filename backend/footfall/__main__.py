from footfall.cli.main import main

main()
