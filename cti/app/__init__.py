"""The daemon (``cti run``): the one TaskGroup, the effect table, the glue per capability.
Only the CLI imports it."""

from cti.app.daemon import Daemon
from cti.app.run import EXIT_AMI_LOGIN, EXIT_CONFIG, EXIT_DATABASE, ShutdownError, run

__all__ = ["EXIT_AMI_LOGIN", "EXIT_CONFIG", "EXIT_DATABASE", "Daemon", "ShutdownError", "run"]
