"""``python -m reflow.executor``: an executor process (started by ProcessExecutor only)."""

from reflow.executor.child import main

main()
