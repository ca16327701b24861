from npuzoo.report.cli import main

main()
