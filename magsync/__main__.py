from magsync.cli import main

main()
