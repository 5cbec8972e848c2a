"""Entry points of the project: the `rarl` command (cli.py) and `rarl serve` (serve.py), the local servers.

The library is rarl_core, the stages are tasks, the Prefect flows are flows; this package only starts things.
"""
