"""``python -m reflow``: the same as the ``reflow`` command."""

from reflow.cli import main

if __name__ == "__main__":
    main()
