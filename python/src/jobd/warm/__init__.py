"""The warm runtime server: imports a preload once, then forks one fresh child per run.

Started by jobd as ``python -m jobd.warm``; docs/runtimes.md is the protocol it speaks.
Nothing here imports the rest of the jobd package, so this subpackage works on its own.
"""
