"""Pure data and rules, no I/O: workflow definitions and their validation, executions, steps."""
