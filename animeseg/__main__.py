from animeseg.cli import main

main()
