"""The dialplan: its contract with the daemon (:mod:`cti.dialplan.contract`: context and
variable names, imports nothing), the checked dial strings (:mod:`cti.dialplan.dialstrings`)
and the generator of ``extensions_cti.conf`` / ``queues_cti.conf``
(:mod:`cti.dialplan.generate`, which reads the settings). Import from the module you need:
this package imports none of them, so the core never loads the generator."""
