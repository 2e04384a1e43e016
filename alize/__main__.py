from alize.cli import main

main()
