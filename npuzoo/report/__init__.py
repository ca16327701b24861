"""Results files: `reports/<model>/<SOC>_bs<BS>.json`, one per (chip, batch size) and owner.

    pieces     one run's pieces read and checked (summary, accuracy, result files)
    agreement  an int8 run's logits against the fp32 export's
    build      the report of one run (`write`) and its accuracy gate
    read       reports written by anyone, read tolerantly and checked as user input
    compare    run-over-run changes, and `compare`'s table
    publish    recording a run and making it its owner's current report (`publish`)
    cli        the command line (`python3 -m npuzoo.report`)
"""
