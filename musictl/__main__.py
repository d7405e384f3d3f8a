"""``python -m musictl`` is the same as the ``musictl`` command."""

from musictl.cli import main

if __name__ == "__main__":
    main()
