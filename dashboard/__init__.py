"""The staff home page `/`: what needs attention, in a constant number of queries (views.py)
and a chart of the last 24 hours drawn on the server (chart.py). Reads portals and
notifications; writes nothing."""
