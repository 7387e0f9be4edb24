"""``python -m memmesh``: the same CLI as the ``memmesh`` command (for a venv whose scripts
folder is not on PATH)."""

from memmesh.interfaces.cli.app import main

if __name__ == "__main__":
    main()
