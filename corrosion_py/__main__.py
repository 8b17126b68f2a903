from corrosion_py.cli import main

main()
