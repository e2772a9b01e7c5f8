"""Work-order backends: the implementations of `cti.workorders.WorkOrderBackend`.

`embedded` keeps tickets in the CTI's own database (the default).
"""
