from npuzoo.bench.runner import main

main()
