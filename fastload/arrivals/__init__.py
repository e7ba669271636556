"""The arrivals wing: where samples are issued. Arrival processes and their pipes (``pipe``),
LoadGen's Server scenario (``loadgen``), the timer for gamma and trace arrivals (``timer``,
``trace``), class and model draws (``draw``), and which of them a run starts (``plans``).

Nothing is imported here: every arrival process imports this package when it starts, and
should load only what its own source needs (the timer's numpy is not LoadGen's).
"""
