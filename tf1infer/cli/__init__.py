"""The ``tf1infer`` command (:mod:`.commands`) and its demo (:mod:`.demo`)."""

from tf1infer.cli.commands import main

__all__ = ["main"]
