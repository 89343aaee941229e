"""The web app (``v2vsim app``, the ``app`` extra): what-if runs in the browser.

A thin layer over the command line and the scenario contract: :mod:`.controls` (what a user
may change, each a ``--set`` path), :mod:`.jobs` (runs of the command line in their own
processes, cached by content), :mod:`.results` (what is shown, read from the results
directory), :mod:`.template` (a scenario from a form), :mod:`.serve` (starting Streamlit) and
:mod:`.page` (the Streamlit page). Only :mod:`.page` imports Streamlit.
"""
