"""``make demo`` (``python -m demo [--keep-running]``): the whole job on one machine, nothing downloaded.

Starts the Temporal dev server (with its Web UI), the Moodle simulator and the worker, takes a sample
event of 36 participants through its life (deploy, add, remove, archive, delete), shows after each step
what changed in Moodle and where to look in the Temporal UI, and stops everything it started.
"""
