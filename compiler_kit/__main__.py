from compiler_kit.cli import main

main()
